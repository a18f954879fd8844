"""Getting events into streamrec: log readers, a synthetic stream, a Kafka publisher, replay.

``producers.logs`` reads MovieLens, CSV and JSONL logs into timestamp-ordered
``ClickEvent`` lists; ``producers.synthetic`` generates a stream with known ground truth;
``producers.publisher`` is the app-facing SDK that publishes clicks to Kafka;
``producers.replay`` paces a log by event time.
"""
