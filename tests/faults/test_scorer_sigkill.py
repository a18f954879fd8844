"""A scorer killed with SIGKILL mid-stream and restarted (issue 12), on a real broker.

Three ``streamrec score`` processes (batches of 10, so many transactions) read the
scale-out changelog (tests/scale_out.py); once 40 % of the triggers are answered, one of
them is killed with SIGKILL (no flush, no commit, no leaving the group, a transaction
maybe open) and restarted under the same instance id. In ``read_committed`` output no
trigger may be answered twice and none lost, and prequential NDCG@10 must stay within
0.002 of one scorer's on the same changelog.
"""

from __future__ import annotations

import pytest

from scale_out import KillPlan, assert_ranks_as_well, run_scorers

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(900)]


def test_a_scorer_killed_and_restarted_loses_and_repeats_no_trigger(
        kafka_bootstrap, scale_out_changelog, one_scorer_run, tmp_path):
    changelog, one = scale_out_changelog, one_scorer_run
    plan = KillPlan(victim=1, at_share=0.4)
    killed = run_scorers(kafka_bootstrap, changelog, 3, tmp_path / "killed", kill=plan)

    seen = killed.killed
    print(f"\nkill: {seen}")
    # Mid-stream: the victim had committed answers, and the rest came after it died.
    assert seen["victim_commits_before_kill"] > 0, f"{seen}\n{killed.log_tail}"
    assert seen["answered_before_kill"] < len(changelog.ledger), seen
    assert seen["restarted_commits"] > 0, f"the restarted scorer never committed\n{killed.log_tail}"
    changelog.ledger.assert_answered_once(killed.answered, killed.name)
    assert_ranks_as_well(one, killed, changelog)
