"""Write a replay result as ``report.json``, ``report.md`` and PNG plots.

The JSON is the record: every metric per system, overall and per window, next to the exact
configuration and the sha256 of the data file, so a number can always be traced back to
what produced it. matplotlib is imported here, lazily and with the Agg backend, so serving
never needs it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from streamrec.app.evaluation.prequential import EvaluationResult


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def report_dict(result: EvaluationResult, config: Mapping[str, Any],
                unavailable: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "protocol": result.protocol,
        "config": dict(config),
        "events": result.events,
        "wall_time_s": result.wall_time_s,
        **result.extra,
        "unavailable_systems": dict(unavailable or {}),
        "systems": result.summary(),
        **_held_out_section(result),
    }


def _held_out_section(result: EvaluationResult) -> dict[str, Any]:
    """``held_out``: the metrics of the events after the ``--tune-until`` split, if any."""
    summary = result.held_out_summary()
    if summary is None:
        return {}
    start = result.held_out_from or 0
    return {"held_out": {"from_event": start, "events": result.events - start,
                         "systems": summary}}


def _fmt(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def markdown_table(report: Mapping[str, Any]) -> str:
    """One row per system, headline columns per K, then coverage, cold start, latency."""
    ks = report["config"]["ks"]
    columns = [f"{m}@{k}" for k in ks for m in ("hr", "ndcg", "mrr")]
    columns += [f"coverage@{k}" for k in ks] + [f"cold_hr@{ks[0]}", "cold_start_share",
                                                "latency_p50_ms", "latency_p99_ms",
                                                "events_per_s"]
    lines = [
        f"# Replay report ({report['protocol']})",
        "",
        f"Data `{report['config'].get('path')}` (sha256 `{report['config'].get('sha256')}`), "
        f"{report['events']:,} events, wall time {report['wall_time_s']:.1f} s. Headline "
        "metrics count events whose user already has history; cold-start users are apart.",
        "",
    ]
    held_out = report.get("held_out")
    if held_out is not None:
        lines += [f"## Held-out: events {held_out['from_event']:,} onwards "
                  f"({held_out['events']:,} events, after the --tune-until split)", ""]
        lines += _table_rows(held_out["systems"], columns)
        lines += ["", "## Whole log", ""]
    lines += _table_rows(report["systems"], columns)
    for name, reason in report.get("unavailable_systems", {}).items():
        lines.append("")
        lines.append(f"- `{name}` unavailable: {reason}")
    return "\n".join(lines) + "\n"


def _table_rows(systems: Mapping[str, Any], columns: list[str]) -> list[str]:
    lines = ["| system | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for name, stats in systems.items():
        overall = stats["overall"]
        lines.append(f"| {name} | " + " | ".join(_fmt(overall.get(c)) for c in columns) + " |")
    return lines


# Eleven systems and more (the default set plus references) must stay tellable apart:
# 20 colours (tab20 reordered so neighbours differ: the dark shades first, then the light
# ones), and past 20 a different line style and marker, so no two systems look the same.
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896",
           "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5")
_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def system_styles(names: list[str]) -> dict[str, dict[str, Any]]:
    """A distinct (colour, line style, marker) per system, stable for a given order."""
    styles = {}
    for i, name in enumerate(names):
        styles[name] = {"color": _COLORS[i % len(_COLORS)],
                        "linestyle": _LINESTYLES[(i // len(_COLORS)) % len(_LINESTYLES)],
                        "marker": _MARKERS[i % len(_MARKERS)]}
    return styles


def _legend_outside(ax: Any) -> None:
    """The legend right of the axes, never over the lines (``bbox_inches="tight"`` keeps it)."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
              frameon=False)


def _plot_metric_over_time(plt: Any, report: Mapping[str, Any], metric: str,
                           path: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 4.5))
    styles = system_styles(list(report["systems"]))
    for name, stats in report["systems"].items():
        windows = stats["windows"]
        xs = [w["end"] for w in windows]
        ys = [np.nan if w.get(metric) is None else w[metric] for w in windows]
        ax.plot(xs, ys, markersize=3, linewidth=1.3, label=name, **styles[name])
    ax.set_xlabel("events replayed")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per window of {report['config']['window']:,} events")
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _plot_latency(plt: Any, result: EvaluationResult, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 4.5))
    styles = system_styles(list(result.metrics))
    all_ms = [np.asarray(acc.latency_s) * 1e3 for acc in result.metrics.values()]
    positive = np.concatenate([a[a > 0] for a in all_ms]) if all_ms else np.empty(0)
    low, high = (positive.min(), positive.max()) if positive.size else (1e-3, 1.0)
    bins = np.logspace(np.log10(low), np.log10(max(high, low * 1.01)), 60)
    for name, ms in zip(result.metrics, all_ms):
        style = styles[name]
        ax.hist(ms[ms > 0], bins=bins, histtype="step", label=name, color=style["color"],
                linestyle=style["linestyle"], linewidth=1.3)
    ax.set_xscale("log")
    ax.set_xlabel("recommend latency (ms)")
    ax.set_ylabel("calls")
    ax.set_title("recommendation latency per call")
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def write_report(out_dir: str | Path, result: EvaluationResult, config: Mapping[str, Any],
                 unavailable: Mapping[str, str] | None = None) -> list[Path]:
    """Write JSON, Markdown and PNGs into ``out_dir`` (created); return the paths."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI; must precede pyplot
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = report_dict(result, config, unavailable)
    paths = [out / "report.json", out / "report.md"]
    paths[0].write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    paths[1].write_text(markdown_table(report))
    for k in result.ks:
        for metric in (f"hr@{k}", f"ndcg@{k}"):
            path = out / f"{metric.replace('@', '_at_')}_over_time.png"
            _plot_metric_over_time(plt, report, metric, path)
            paths.append(path)
    latency_path = out / "latency_histogram.png"
    _plot_latency(plt, result, latency_path)
    paths.append(latency_path)
    return paths
