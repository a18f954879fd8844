"""streamrec: a streaming real-time recommender on Kafka.

One import namespace, in floors; imports only go down (``tests/unit/test_import_floors.py``):

5. ``streamrec.app``: the CLI and its commands, the demo pipeline, replay evaluation, the
   local Kafka launcher; ``streamrec.producers.cli``.
4. ``streamrec.transport``: the Kafka runtime, the in-process bus with the same lifecycle,
   ``kafka_clients`` (every Kafka client is built there); the metrics server; the Kafka-bound
   parts of ``streamrec.producers`` and ``streamrec.consumers``.
3. ``streamrec.consumers``: the pure ingest, score and train processors.
2. ``streamrec.online_models``, ``streamrec.export`` and the pure parts of
   ``streamrec.producers``: learners, the deep model and its store, log readers.
1. The modules here: settings, connection config, event, record and message schemas,
   control messages, signing, input bounds, the processor protocol, ranking metric formulas.

The repository keeps ``consumers/``, ``producers/``, ``online_models/`` and ``export/`` at its
top level; ``streamrec/<folder>`` links to each, so they install as ``streamrec.<folder>``.
"""

__version__ = "0.1.0"
