"""Getting events into streamrec: log readers, a synthetic stream, a Kafka publisher, replay.

``streamrec.producers.logs`` reads MovieLens, CSV and JSONL logs into timestamp-ordered
``ClickEvent`` lists; ``streamrec.producers.synthetic`` generates a stream with known ground truth;
``streamrec.producers.publisher`` is the app-facing SDK that publishes clicks to Kafka;
``streamrec.producers.replay`` paces a log by event time.
"""
