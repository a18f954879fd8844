"""The topic layout of streamrec.transport.topics, without a broker."""

from __future__ import annotations

import pytest

from streamrec.config import Settings
from streamrec.transport.topics import COMPACT, TopicLayoutError, check_layout, topic_specs

SETTINGS = Settings(topic_prefix="x-", partitions=6)


def test_every_topic_name_has_a_spec() -> None:
    assert {s.name for s in topic_specs(SETTINGS)} == set(SETTINGS.topics.all().values())


def test_scorer_state_is_laid_out_as_user_state() -> None:
    specs = {s.name: s for s in topic_specs(SETTINGS)}
    t = SETTINGS.topics
    state, user_state = specs[t.scorer_state], specs[t.user_state]
    assert state.partitions == user_state.partitions == 6
    assert state.co_partitioned and user_state.co_partitioned
    assert state.configs["cleanup.policy"] == COMPACT["cleanup.policy"]
    assert state.configs["max.message.bytes"] == user_state.configs["max.message.bytes"]


def test_a_scorer_state_with_another_partition_count_is_refused() -> None:
    specs = topic_specs(SETTINGS)
    counts = {s.name: s.partitions for s in specs}
    check_layout(specs, counts)
    with pytest.raises(TopicLayoutError, match="scorer-state has 4 partitions, expected 6"):
        check_layout(specs, {**counts, SETTINGS.topics.scorer_state: 4})
