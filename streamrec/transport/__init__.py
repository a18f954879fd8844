"""Floor 4, transport: the Kafka runtime, the in-process bus with the same lifecycle,
and the one module that builds every Kafka client (``kafka_clients``).

Imports only go down: contracts, learners and models, processors; never ``streamrec.app``.
"""
