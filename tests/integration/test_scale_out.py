"""Scale-out equivalence on a real broker (issue 12): 1 scorer and 3 scorers, same changelog.

ML-100K's first ``STREAMREC_SCALE_OUT_EVENTS`` events (5,000 by default; 20,000 for the acceptance) go
through one ingest into 4 partitions; one scorer and then three scorers (a fresh group
each, ``streamrec score`` processes, batches of 10) read that very changelog. Both must
answer every trigger exactly once in ``read_committed`` output, and their prequential
NDCG@10 must be within 0.002. Item-side knowledge is global, so adding scorers should
change no recommendation: the count of triggers whose top-10 differs is printed (and shown
when the bound fails) as the sharper signal, ideally 0.
"""

from __future__ import annotations

import pytest

from scale_out import assert_ranks_as_well, run_scorers

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(900)]


def test_three_scorers_answer_every_trigger_once_and_rank_as_well_as_one(
        kafka_bootstrap, scale_out_changelog, one_scorer_run, tmp_path):
    changelog, one = scale_out_changelog, one_scorer_run
    three = run_scorers(kafka_bootstrap, changelog, 3, tmp_path / "three-scorers")

    changelog.ledger.assert_answered_once(three.answered, three.name)
    assert_ranks_as_well(one, three, changelog)
