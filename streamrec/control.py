"""Control messages on ``clicks``: requests applied at a fixed point of a partition's order.

A control message is a record on ``clicks`` with a ``streamrec.control`` header. Ingest
applies it where it sits among the partition's events, so the online models stay a pure
function of the partition's message sequence and a restarted instance that re-reads the
partition reaches the same models. Two kinds exist:

- ``forget``: keyed by the user (it travels that user's partition, after the user's
  events published before it); erases the user's state and model traces.
- ``adopt-model``: one per partition, keyed by ``CONTROL_KEY``; a JSON value names a
  published deep model whose item table the partition's online embeddings adopt.

The builders live here, next to each other, so the CLI and the trainer write exactly what
ingest reads.

>>> kind_of(forget_request("u1").headers)
b'forget'
>>> [m.partition for m in adopt_model_requests("v000002", "/models/v000002",
...                                             {"items.json": "ab"}, [1, 0])]
[0, 1]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

CONTROL_HEADER = "streamrec.control"
FORGET = b"forget"
ADOPT_MODEL = b"adopt-model"
# Key of control messages that concern a partition, not a user. It is never taken for a
# user id: ingest recognises control messages by their header, before any key check.
CONTROL_KEY = b"__streamrec_control__"


@dataclass(frozen=True)
class ControlMessage:
    """One record to produce on ``clicks``; ``partition`` None lets the key decide."""

    key: bytes
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    partition: int | None = None


@dataclass(frozen=True)
class AdoptModelRequest:
    """The value of an ``adopt-model`` message: which model folder, and its files' sha256."""

    version: str
    path: str
    sha256: Mapping[str, str]

    @classmethod
    def decode(cls, value: bytes | None) -> "AdoptModelRequest":
        """Parse a message value; ``ValueError`` if it is not a well-formed request."""
        try:
            data = json.loads(value or b"")
            request = cls(str(data["version"]), str(data["path"]),
                          {str(k): str(v) for k, v in dict(data["sha256"]).items()})
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"adopt-model value is not a request: {exc!r}") from None
        return request


def kind_of(headers: Iterable[tuple[str, bytes]]) -> bytes | None:
    """The control kind a record's headers carry (None: an ordinary event)."""
    for key, value in headers:
        if key == CONTROL_HEADER:
            return value
    return None


def forget_request(user_id: str) -> ControlMessage:
    # Keyed by the user: it reaches the ingest instance owning the user, in order after
    # every event of the user published before it.
    return ControlMessage(user_id.encode(), None, ((CONTROL_HEADER, FORGET),))


def adopt_model_requests(version: str, path: str, sha256: Mapping[str, str],
                         partitions: Iterable[int], uri: str | None = None
                         ) -> list[ControlMessage]:
    """One ``adopt-model`` message per partition of ``clicks`` (every partition adopts).

    ``sha256`` maps the item-table files of the model folder to their checksums; ingest
    reads those files only and refuses them if a checksum differs.
    """
    value: dict[str, Any] = {"version": version, "path": path, "sha256": dict(sha256)}
    if uri is not None:
        value["uri"] = uri
    payload = json.dumps(value, sort_keys=True).encode()
    return [ControlMessage(CONTROL_KEY, payload, ((CONTROL_HEADER, ADOPT_MODEL),), p)
            for p in sorted(partitions)]


def send_control(producer: Any, topic: str, messages: Sequence[ControlMessage],
                 timeout_s: float = 60.0) -> None:
    """Produce control messages and wait until every one is acknowledged.

    ``producer`` is a kafka-python ``KafkaProducer``; keep it idempotent (the default of
    kafka-python 3) so a retried send cannot write a control message twice.
    """
    futures = [producer.send(topic, key=m.key, value=m.value, headers=list(m.headers),
                             partition=m.partition) for m in messages]
    for future in futures:
        future.get(timeout=timeout_s)
