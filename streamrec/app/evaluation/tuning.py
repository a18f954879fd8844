"""Choose the fusion settings on the tuning prefix only: a bounded coordinate descent.

Each candidate is scored by replaying ``events[:split]`` (never one event after it) through
the same system factory a replay uses, so the choice runs the production path. The search
visits each setting in turn, tries every value of its grid with the others held at their
best so far, and keeps the best NDCG@K; the cost is at most ``sum(len(grid))`` prefix replays
per pass. A value replaces the one held only if it scores ``min_gain`` (relative) better:
a difference of a few ten-thousandths of NDCG is noise on one prefix, and the value already
held is then kept rather than, say, a deeper fusion that costs the scorer more per trigger.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from streamrec.app.evaluation.prequential import PrequentialEvaluator
from streamrec.app.evaluation.systems import SystemOptions, build_systems
from streamrec.config import Settings
from streamrec.events import ClickEvent

# The settings issue 14 names, with coarse grids around today's values.
DEFAULT_GRID: Mapping[str, tuple[float | int, ...]] = {
    "covisit_weight": (0.75, 1.5, 3.0),
    "online_weight": (0.25, 0.5, 1.0),
    "deep_weight": (0.5, 1.0, 2.0),
    "covisit_recent": (3, 5, 10),
    "transition_weight": (0.0, 0.5, 1.0, 2.0),
    "fusion_depth": (25, 50, 100),
    # Only with STREAMREC_FUSION=learned.
    "fusion_half_life": (1000.0, 5000.0, 20000.0),
}

# Relative NDCG gain a grid value needs over the one held to replace it (0.5%: ~0.0004 at 0.09).
DEFAULT_MIN_GAIN = 0.005

# Systems that fuse a deep model: only for them can ``deep_weight`` change a ranking.
DEEP_SYSTEMS = frozenset({"streamrec-full"})


def grid_for(system: str, settings: Settings | None = None
             ) -> dict[str, tuple[float | int, ...]]:
    """``DEFAULT_GRID`` without the settings ``system`` (with ``settings``) never reads.

    ``deep_weight`` weighs the deep model's candidates in the fusion; a system without a deep
    model scores every value the same, so trying them would spend replays and "choose" a
    value nothing measured. ``fusion_half_life`` likewise needs the learned fusion.

    >>> "deep_weight" in grid_for("streamrec"), "deep_weight" in grid_for("streamrec-full")
    (False, True)
    >>> "fusion_half_life" in grid_for("streamrec", Settings(fusion="learned"))
    True
    """
    learned = settings is not None and settings.fusion == "learned"
    return {name: values for name, values in DEFAULT_GRID.items()
            if (name != "deep_weight" or system in DEEP_SYSTEMS)
            and (name != "fusion_half_life" or learned)}


# Score of one candidate: (settings, tuning-prefix events) → the metric to maximise.
Scorer = Callable[[Settings, Sequence[ClickEvent]], float]


@dataclass
class TuningResult:
    chosen: dict[str, float | int]
    score: float
    trials: list[dict[str, object]] = field(default_factory=list)

    def as_env(self) -> list[str]:
        return [f"STREAMREC_{name.upper()}={value}" for name, value in self.chosen.items()]


def replay_scorer(system: str = "streamrec", k: int = 10, seed: int = 0) -> Scorer:
    """NDCG@k of ``system`` replayed prequentially on the prefix (users with history)."""
    def score(settings: Settings, prefix: Sequence[ClickEvent]) -> float:
        systems, unavailable = build_systems([system], SystemOptions(settings, seed))
        if not systems:
            raise RuntimeError(f"system {system!r} unavailable: {unavailable.get(system)}")
        result = PrequentialEvaluator(systems, (k,), window=max(len(prefix), 1)).run(prefix)
        value = result.summary()[system]["overall"].get(f"ndcg@{k}")
        return float(value or 0.0)
    return score


def _beats(score: float, held: float, min_gain: float) -> bool:
    """Whether ``score`` beats the ``held`` one by the relative margin (plainly, if held <= 0)."""
    return score > held * (1.0 + min_gain) if held > 0 else score > held


def coordinate_descent(events: Sequence[ClickEvent], split: int, base: Settings,
                       scorer: Scorer, grid: Mapping[str, Sequence[float | int]] = DEFAULT_GRID,
                       passes: int = 1, min_gain: float = DEFAULT_MIN_GAIN,
                       on_trial: Callable[[dict[str, object]], None] | None = None
                       ) -> TuningResult:
    """Tune ``grid``'s settings on ``events[:split]``; the scorer never sees the rest."""
    prefix = list(events[:split])
    best = {name: getattr(base, name) for name in grid}
    scores: dict[tuple[tuple[str, object], ...], float] = {}
    trials: list[dict[str, object]] = []

    def evaluate(candidate: dict[str, float | int]) -> float:
        key = tuple(sorted(candidate.items()))
        if key not in scores:  # a revisited point costs nothing
            overrides: dict[str, Any] = dict(candidate)
            scores[key] = scorer(dataclasses.replace(base, **overrides), prefix)
            trial: dict[str, object] = {"settings": dict(candidate), "score": scores[key]}
            trials.append(trial)
            if on_trial is not None:
                on_trial(trial)
        return scores[key]

    best_score = evaluate(best)
    for _ in range(passes):
        for name, values in grid.items():
            for value in values:
                candidate = {**best, name: value}
                score = evaluate(candidate)
                if _beats(score, best_score, min_gain):
                    best, best_score = candidate, score
    return TuningResult(best, best_score, trials)
