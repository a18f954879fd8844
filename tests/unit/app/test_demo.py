"""``streamrec demo`` shows the whole system: the deep model trained, gated, swapped in, explained.

Small sizes and a tiny model keep this fast; what is checked is that each stage shows up in
what a user reads, and that the figures printed are the figures returned.
"""

from __future__ import annotations

import io
import re

import pytest

from streamrec.app.demo import explain, run_demo
from streamrec.config import Settings

pytest.importorskip("torch")
pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def demo_run():
    from streamrec.consumers.train import TrainerConfig

    out = io.StringIO()
    tiny = TrainerConfig(epochs=2, warm_epochs=1, dim=16, max_len=12, n_blocks=1, n_heads=2,
                         min_events=500, min_cases=10, threads=1, exporter="torchscript")
    result = run_demo(Settings(), users=150, items=200, events=4_000, seed=3, chunk=500,
                      train_at=(1_500,), trainer_config=tiny, out=out)
    return result, out.getvalue()


def test_demo_swaps_in_the_deep_model_from_the_trainer(demo_run):
    result, text = demo_run
    assert result.deep_unavailable is None
    assert result.swaps == ["v000001"]
    assert "trainer (started after 1,500 events)" in text and "ONNX export + parity gate" in text
    assert "scorer hot-swapped deep model v000001" in text
    # As on Kafka, ingest got one adopt-model message per clicks partition and adopted it.
    assert result.adoptions == {"adopted": Settings().partitions}
    # Recommendations published after the swap carry the deep model's version.
    assert re.search(r"\[model v000001\+(online-blend|popularity), trigger ", text)


def test_demo_explains_recommendations_by_their_sources(demo_run):
    _, text = demo_run
    explanations = re.findall(r"^ +i\d+: (.+)$", text, flags=re.MULTILINE)
    assert explanations, "no explanation lines"
    assert any("deep #" in line for line in explanations)
    assert all(line != "no source recorded" for line in explanations)


def test_demo_prints_hit_rates_before_and_after_the_deep_model(demo_run):
    result, text = demo_run
    assert result.online.judged > 0 and result.deep.judged > 0
    before = re.search(r"HR@10 live, online only \(before the deep model\): ([0-9.]+)", text)
    after = re.search(r"HR@10 live, with the deep model: ([0-9.]+) .* oracle HR@10: ([0-9.]+)",
                      text)
    assert before and after
    assert float(before.group(1)) == pytest.approx(result.online.hit_rate, abs=5e-5)
    assert float(after.group(1)) == pytest.approx(result.deep.hit_rate, abs=5e-5)
    assert float(after.group(2)) == pytest.approx(result.deep.oracle_hit_rate, abs=5e-5)
    # Beyond chance: a random top-10 of ~200 unseen items hits ~5%.
    assert result.deep.hit_rate > 0.08


def test_demo_trains_in_the_background_and_still_swaps():
    from streamrec.consumers.train import TrainerConfig

    out = io.StringIO()
    tiny = TrainerConfig(epochs=1, warm_epochs=1, dim=8, max_len=8, n_blocks=1, n_heads=1,
                         min_events=300, min_cases=10, threads=1, exporter="torchscript")
    result = run_demo(Settings(), users=60, items=80, events=1_500, seed=2, chunk=250,
                      train_at=(500,), trainer_config=tiny, background=True, show_users=0,
                      out=out)
    # Wherever the run ends (mid-stream or after it), its model is served.
    assert result.swaps == ["v000001"], out.getvalue()
    # It trained in the trainer process with one torch thread: the other core streams.
    assert "in its own process (1 torch thread(s))" in out.getvalue()


def test_the_demo_trainer_gets_one_thread_and_a_time_cap_only_in_the_background():
    from streamrec.app.demo import demo_trainer_config

    background = demo_trainer_config(Settings(), 7, background=True)
    waiting = demo_trainer_config(Settings(), 7, background=False)
    assert (background.threads, background.max_train_s) == (1, 40.0)
    # When the stream waits, a cap would only make the figures depend on the load.
    assert (waiting.threads, waiting.max_train_s) == (2, None)


def test_the_trainer_runs_a_fifth_into_the_stream_and_every_fifth_after():
    from streamrec.app.demo import default_train_at

    assert default_train_at(150_000) == (30_000, 60_000, 90_000, 120_000)
    assert default_train_at(4_000) == (1_600, 2_400, 3_200)  # none before 1,000 events


def test_demo_with_the_deep_model_off_says_so():
    out = io.StringIO()
    result = run_demo(Settings(), users=50, items=60, events=600, seed=1, chunk=200,
                      deep=False, out=out)
    assert result.swaps == [] and result.deep.judged == 0
    assert "deep model: off" in out.getvalue()


def test_explanation_names_each_source_once():
    line = explain({"deep_rank": 3.0, "deep_log_prob": -2.0, "fm": 2.0, "online_rank": 1.0,
                    "covisit_rank": 7.0, "covisit_score": 0.4})
    assert line == "deep #3, fm #2, co-visited #7"
