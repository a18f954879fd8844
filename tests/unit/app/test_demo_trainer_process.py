"""The demo's trainer runs in its own process: plain bytes in, plain JSON out, failures reported.

What matters to a user: a model trained in the worker is swapped in while the stream runs;
the background worker trains with one torch thread (the other core streams); a run that
raises, or a worker that dies, is one line in the output and the stream goes on.
"""

from __future__ import annotations

import io
import re

import pytest

from streamrec.app.trainer_process import decode_job, encode_job
from streamrec.config import Settings
from streamrec.records import Record


def _records() -> list[Record]:
    return [Record("clicks", 0, 0, b"u1", b'{"a": 1}', 1_700_000_000_000, ()),
            Record("clicks", 1, 7, None, None, 5, (("streamrec-control", b"forget"),
                                                   ("x", b""))),
            Record("clicks", 1, 8, b"", b"\x00\xff", -1, ())]


def test_a_training_job_crosses_the_pipe_as_bytes_and_comes_back_equal():
    records = _records()
    current = {"version": "v000001", "uri": "v000001", "sha256": {"model.onnx": "ab"}}
    payload = encode_job(records, {0: (0, 1), 1: (7, 9)}, current)
    assert isinstance(payload, bytes)
    decoded, offsets, decoded_current = decode_job(payload, "clicks")
    assert decoded == records
    assert offsets == {0: (0, 1), 1: (7, 9)} and decoded_current == current


@pytest.mark.parametrize("cut", [1, 10, -3, -1])
def test_a_truncated_job_is_refused(cut):
    payload = encode_job(_records(), {0: (0, 1)}, None)
    with pytest.raises(ValueError):
        decode_job(payload[:cut], "clicks")


def test_trailing_bytes_after_the_last_record_are_refused():
    with pytest.raises(ValueError, match="after the last record"):
        decode_job(encode_job(_records(), {0: (0, 1)}, None) + b"x", "clicks")


def _tiny_config(**changes):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from streamrec.consumers.train import TrainerConfig

    values = dict(epochs=1, warm_epochs=1, dim=8, max_len=8, n_blocks=1, n_heads=1,
                  min_events=300, min_cases=10, threads=1, exporter="torchscript")
    return TrainerConfig(**(values | changes))


def test_a_training_run_that_raises_is_reported_and_the_stream_goes_on():
    from streamrec.app.demo import run_demo

    out = io.StringIO()
    # 8 dimensions cannot split into 3 attention heads: the model raises in the worker.
    result = run_demo(Settings(), users=60, items=80, events=1_500, seed=2, chunk=250,
                      train_at=(500, 1_000), trainer_config=_tiny_config(n_heads=3),
                      show_users=1, out=out)
    text = out.getvalue()
    failures = re.findall(r"trainer \(started after ([0-9,]+) events\) failed: "
                          r"training_failed: ValueError\(.*divisible", text)
    assert failures == ["500", "1,000"], text
    # The stream went on past the failures: it ended, and recommended after them.
    assert result.events == 1_500 and result.swaps == []
    assert text.index("failed") < text.index("live recommendations after 1,500 events")
    assert result.online.judged > 0 and result.deep.judged == 0


def test_a_dead_trainer_process_is_an_outcome_not_a_crash():
    from streamrec.app.trainer_process import TrainerProcess
    from streamrec.events import ClickBounds

    worker = TrainerProcess(_tiny_config(), "/nonexistent-store", "clicks", ClickBounds())
    try:
        worker._process.kill()  # as the OOM killer would
        worker._process.join(10)
        worker.submit(_records(), {0: (0, 1)}, None)
        outcome = worker.result()
        assert outcome.reason == "trainer_process_died" and not outcome.promoted
        assert outcome.error and "without an outcome" in outcome.error
        assert not worker.busy
    finally:
        worker.close()
    assert not worker._process.is_alive()
