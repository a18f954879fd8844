"""`streamrec replay` end to end on a tiny MovieLens-format log, and its error paths."""

from __future__ import annotations

import hashlib
import json
import sys

import pytest

from streamrec.app.cli import main
from streamrec.app.evaluation.systems import SystemOptions, build_systems


@pytest.fixture
def log(tmp_path):
    lines = [f"{1 + n % 7}\t{1 + (n * 3) % 11}\t{1 + n % 5}\t{1000 + n // 2}" for n in range(120)]
    path = tmp_path / "u.data"
    path.write_text("\n".join(lines) + "\n")
    return path


def replay(log, tmp_path, *extra: str) -> int:
    return main(["replay", str(log), "--format", "movielens", "--out", str(tmp_path / "out"),
                 "--no-progress", *extra])


def test_replay_writes_json_markdown_and_plots(log, tmp_path, capsys):
    code = replay(log, tmp_path, "--k", "5", "--k", "10", "--window", "40",
                  "--systems", "most-popular,item-knn,markov,recent-popular,river-mf")
    assert code == 0
    out = tmp_path / "out"
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["sha256"] == hashlib.sha256(log.read_bytes()).hexdigest()
    assert report["config"]["ks"] == [5, 10] and report["config"]["window"] == 40
    assert set(report["systems"]) == {"most-popular", "item-knn", "markov", "recent-popular",
                                      "river-mf"}
    pop = report["systems"]["most-popular"]
    assert len(pop["windows"]) == 3 and pop["overall"]["events"] == 120
    for key in ("hr@5", "ndcg@10", "mrr@10", "coverage@5", "cold_hr@5", "cold_start_share",
                "latency_p50_ms", "latency_p99_ms", "events_per_s"):
        assert key in pop["overall"]
    assert "| most-popular |" in (out / "report.md").read_text()
    assert len(list(out.glob("*.png"))) >= 2
    assert "item-knn" in capsys.readouterr().out


def test_replay_is_deterministic_with_a_seed(log, tmp_path):
    reports = []
    for run in ("a", "b"):
        assert main(["replay", str(log), "--format", "movielens", "--seed", "5", "--no-progress",
                     "--systems", "river-mf,item-knn", "--out", str(tmp_path / run)]) == 0
        report = json.loads((tmp_path / run / "report.json").read_text())
        reports.append({name: {k: v for k, v in s["overall"].items()
                               if not k.startswith(("latency", "events_per"))}
                        for name, s in report["systems"].items()})
    assert reports[0] == reports[1]


def test_last_item_protocol_and_limit(log, tmp_path):
    assert replay(log, tmp_path, "--protocol", "last-item", "--limit", "60",
                  "--systems", "most-popular") == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["protocol"] == "last-item" and report["events"] == 60
    assert report["test_events"] == 7


def test_missing_streamrec_system_is_reported_not_fatal(log, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "streamrec.app.pipeline", None)  # import now fails
    built, unavailable = build_systems(["streamrec", "most-popular"], SystemOptions())
    assert list(built) == ["most-popular"] and "streamrec" in unavailable
    assert replay(log, tmp_path, "--systems", "streamrec,most-popular") == 0
    assert "unavailable" in capsys.readouterr().err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert "streamrec" in report["unavailable_systems"]


@pytest.mark.parametrize("args", [["--k", "0"], ["--systems", "nope"], ["--window", "x"],
                                  ["--protocol", "weird"]])
def test_bad_arguments_exit_2_with_one_line(log, tmp_path, capsys, args):
    with pytest.raises(SystemExit) as exc:
        replay(log, tmp_path, *args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("streamrec: error:") and "\n" not in err


def test_missing_file_and_unreachable_broker_exit_2(log, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("STREAMREC_CONNECT_TIMEOUT_S", "1")  # nothing listens: no need to wait 10 s
    assert replay(tmp_path / "absent.data", tmp_path) == 2
    assert "no such file" in capsys.readouterr().err
    assert replay(log, tmp_path, "--via-kafka", "--systems", "most-popular",
                  "--bootstrap-servers", "127.0.0.1:1") == 2
    assert "cannot reach Kafka" in capsys.readouterr().err


def test_missing_eval_extra_fails_before_the_replay_starts(log, tmp_path, capsys, monkeypatch):
    import importlib.util

    from streamrec.app.evaluation import cli as replay_cli

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real_find_spec(name, *a))
    started = []
    monkeypatch.setattr(replay_cli, "build_systems", lambda *a, **k: started.append(1))
    assert replay(log, tmp_path, "--systems", "most-popular") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "matplotlib" in err and "streamrec[eval]" in err
    assert not started and not (tmp_path / "out").exists()  # nothing ran, nothing written


def test_eleven_systems_get_distinct_styles_and_the_legend_sits_outside(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from streamrec.app.evaluation import report

    names = [f"system-{i}" for i in range(11)]
    styles = report.system_styles(names)
    assert len({s["color"] for s in styles.values()}) == 11
    many = report.system_styles([f"s{i}" for i in range(45)])
    assert len({tuple(s.values()) for s in many.values()}) == 45  # never two alike
    fake = {"config": {"window": 10}, "systems": {
        name: {"windows": [{"end": 10, "hr@10": 0.1 * i}, {"end": 20, "hr@10": 0.05 * i}]}
        for i, name in enumerate(names)}}
    captured = {}
    real_close = plt.close
    plt_close = lambda fig: captured.setdefault("fig", fig)  # noqa: E731 - keep it for checks
    try:
        plt.close = plt_close
        report._plot_metric_over_time(plt, fake, "hr@10", tmp_path / "hr.png")
    finally:
        plt.close = real_close
    fig = captured["fig"]
    ax = fig.axes[0]
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == names
    fig.canvas.draw()
    axes_box = ax.get_window_extent()
    assert legend.get_window_extent().x0 >= axes_box.x1  # right of the axes, not over lines
    assert (tmp_path / "hr.png").stat().st_size > 0
    real_close(fig)


TIMINGS = ("latency_p50_ms", "latency_p99_ms", "latency_mean_ms", "events_per_s")


def _outcomes(stats: dict) -> list:
    spans = [stats["overall"], *stats["windows"]]
    return [{key: value for key, value in span.items() if key not in TIMINGS} for span in spans]


def test_replay_with_worker_processes_reports_the_serial_figures(log, tmp_path):
    reports = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}"
        assert main(["replay", str(log), "--format", "movielens", "--out", str(out),
                     "--no-progress", "--window", "40", "--jobs", jobs, "--tune-until", "0.5",
                     "--systems", "markov,most-popular,item-knn"]) == 0
        reports[jobs] = json.loads((out / "report.json").read_text())
    serial, parallel = reports["1"], reports["2"]
    assert (serial["config"]["jobs"], parallel["config"]["jobs"]) == (1, 2)
    assert list(parallel["systems"]) == ["markov", "most-popular", "item-knn"]
    for name in serial["systems"]:
        assert _outcomes(parallel["systems"][name]) == _outcomes(serial["systems"][name])
        assert (_outcomes(parallel["held_out"]["systems"][name])
                == _outcomes(serial["held_out"]["systems"][name]))
