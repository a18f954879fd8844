"""streamrec_recommendation_freshness_seconds: click produced -> recommendation published."""

from __future__ import annotations

from streamrec.config import Settings
from streamrec.consumers.ingest import IngestProcessor
from streamrec.consumers.score import ScoreProcessor
from streamrec.events import ClickEvent, encode_click
from streamrec.metrics.registry import MetricsRegistry
from streamrec.records import Output
from streamrec.transport.bus import InProcessBus
from streamrec.transport.bus_runner import InProcessRunner


def test_each_event_trigger_observes_its_clicks_age_at_publishing() -> None:
    settings = Settings(partitions=1)
    bus = InProcessBus(1)
    ingest = InProcessRunner(bus, IngestProcessor(settings), [settings.topics.clicks],
                             batch_size=1)
    produced_s = [1_000.0, 1_000.5, 1_001.0]
    for n, at in enumerate(produced_s):
        click = ClickEvent(event_id=f"e{n}", user_id=f"u{n}", item_id="i1", type="click",
                           ts=float(n))
        bus.produce(Output(settings.topics.clicks, click.user_id.encode(), encode_click(click)),
                    timestamp_ms=int(at * 1000))
    ingest.drain()
    scorer = ScoreProcessor(settings, clock=lambda: 1_002.0)  # published at t = 1002 s
    registry = MetricsRegistry()
    scorer.bind_metrics(registry)
    result = scorer.process(list(bus.topic(settings.topics.user_state)[0]))
    assert result.processed == 3
    text = registry.render()
    assert "streamrec_recommendation_freshness_seconds_count 3" in text
    # ages 2.0 + 1.5 + 1.0 s
    assert "streamrec_recommendation_freshness_seconds_sum 4.5" in text
    assert 'streamrec_recommendation_freshness_seconds_bucket{le="1.0"} 1' in text
