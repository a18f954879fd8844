"""Replay evaluation: prequential and leave-last-out protocols, metrics, reports, CLI.

``PrequentialEvaluator`` drives recommenders through a time-ordered log test-then-train;
``evaluate_last_item`` is the offline leave-last-out protocol; ``write_report`` turns a
result into JSON, Markdown and PNG plots. See "Evaluation: replaying logs" in DESIGN.md.
"""

from streamrec.app.evaluation.last_item import evaluate_last_item, split_last_item
from streamrec.ranking_metrics import MetricsAccumulator, hit_rate, mrr, ndcg
from streamrec.app.evaluation.prequential import EvaluationResult, PrequentialEvaluator

__all__ = [
    "EvaluationResult", "MetricsAccumulator", "PrequentialEvaluator", "evaluate_last_item",
    "hit_rate", "mrr", "ndcg", "split_last_item",
]
