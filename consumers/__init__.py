"""The long-running services: ``ingest``, ``score`` (and later ``train``).

Each is a pure processor (``process(batch) -> ProcessResult``) plus a thin binding to Kafka in
``streamrec.transport.runtime``; ``demo`` and replay drive the same processors in-process.
"""
