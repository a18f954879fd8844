"""Control messages on ``clicks``: requests applied at a fixed point of a partition's order.

A control message is a record on ``clicks`` with a ``streamrec.control`` header. Ingest
applies it where it sits among the partition's events, so the online models stay a pure
function of the partition's message sequence and a restarted instance that re-reads the
partition reaches the same models. Two kinds exist:

- ``forget``: keyed by the user (it travels that user's partition, after the user's
  events published before it); erases the user's state and model traces.
- ``adopt-model``: one per partition, keyed by ``CONTROL_KEY``; its value is the exact
  value the trainer put on ``models`` for the version (``ModelAnnouncement``): the version,
  the folder and the sha256 of the version's manifest. Ingest takes every file checksum
  from that manifest in its own model store, never from the message, and adopts only a
  version newer than the one it holds (``streamrec.consumers.model_adoption``).

Why the adopt-model message carries the announcement instead of ingest reading ``models``:
ingest must stay a pure function of its partition's record order (a restart re-reads the
partition and must adopt at the same offsets), so it cannot consult another topic. The
message pins the manifest (by sha256) and the manifest pins the files, exactly as the
``models`` message does for the scorer; with a control secret set the adopt-model message
is signed by the trainer (``streamrec.signing``, kind ``adopt-model``), so only the holder of
the secret can announce a model to ingest, and that signature never verifies as a ``models``
message or for another key. ``verify_control`` is the one check ingest runs on every
control record.

The builders live here, next to each other, so the CLI and the trainer write exactly what
ingest reads.

>>> kind_of(forget_request("u1").headers)
b'forget'
>>> value = b'{"version": "v000002", "manifest_sha256": "%s"}' % (b"ab" * 32)
>>> [m.partition for m in adopt_model_requests(value, [1, 0])]
[0, 1]
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from streamrec.signing import sign_headers, verify_signature

CONTROL_HEADER = "streamrec.control"
FORGET = b"forget"
ADOPT_MODEL = b"adopt-model"
CONTROL_KINDS = (FORGET, ADOPT_MODEL)
# Key of control messages that concern a partition, not a user. It is never taken for a
# user id: ingest recognises control messages by their header, before any key check.
CONTROL_KEY = b"__streamrec_control__"
# A models message is a few hundred bytes; anything far larger is not one (and is not parsed).
MAX_ANNOUNCEMENT_BYTES = 64 * 1024
MAX_PATH_CHARS = 4096
_VERSION = re.compile(r"^v(\d{6,12})$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class BadControl(ValueError):
    """A control-plane record that must not be applied; ``reason`` is a short code
    (``bad_signature``, ``bad_request``)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ControlMessage:
    """One record to produce on ``clicks``; ``partition`` None lets the key decide."""

    key: bytes
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    partition: int | None = None


def version_number(version: str | None) -> int | None:
    """The number of a model version name (``v000007`` -> 7); None if it is not one."""
    match = _VERSION.match(version) if isinstance(version, str) else None
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class ModelAnnouncement:
    """A ``models`` message value (also the value of ``adopt-model``): which version, the
    folder the trainer wrote it to, and the sha256 of its manifest. ``fields`` is the whole
    decoded message (metrics, uri, ...), untrusted."""

    version: str
    manifest_sha256: str
    path: str | None
    fields: dict[str, Any]
    published_at: float | None = None  # when the trainer announced it (epoch s)

    @classmethod
    def decode(cls, value: bytes | None) -> "ModelAnnouncement":
        """Parse a value; ``BadControl("bad_request")`` and nothing else on any failure."""
        if value is None or len(value) > MAX_ANNOUNCEMENT_BYTES:
            raise BadControl("bad_request", f"value of {len(value or b'')} bytes is no "
                             "model announcement")
        try:
            data = json.loads(value)
        except Exception as exc:  # noqa: BLE001 - RecursionError, UnicodeDecodeError, ...
            raise BadControl("bad_request", f"not JSON: {type(exc).__name__}") from None
        if not isinstance(data, dict):
            raise BadControl("bad_request", "not a JSON object")
        version, sha, path = data.get("version"), data.get("manifest_sha256"), data.get("path")
        if version_number(version) is None:
            raise BadControl("bad_request", f"version {str(version)[:40]!r} is not vNNNNNN")
        if not isinstance(sha, str) or not _SHA256.match(sha):
            raise BadControl("bad_request", "manifest_sha256 is not a sha256 hex digest")
        if path is not None and (not isinstance(path, str) or not path
                                 or len(path) > MAX_PATH_CHARS or "\x00" in path):
            raise BadControl("bad_request", "path is not a usable folder name")
        published = data.get("published_at")
        if published is not None and (isinstance(published, bool) or not isinstance(
                published, (int, float)) or not math.isfinite(published)):
            raise BadControl("bad_request", "published_at is not a finite number")
        return cls(str(version), sha, path, data,
                   None if published is None else float(published))


# The request an adopt-model message carries is the announcement itself.
AdoptModelRequest = ModelAnnouncement


def kind_of(headers: Iterable[tuple[str, bytes]]) -> bytes | None:
    """The control kind a record's headers carry (None: an ordinary event)."""
    for key, value in headers:
        if key == CONTROL_HEADER:
            return value
    return None


def forget_request(user_id: str, secret: str = "") -> ControlMessage:
    # Keyed by the user: it reaches the ingest instance owning the user, in order after
    # every event of the user published before it.
    key = user_id.encode()
    return ControlMessage(key, None, sign_headers(((CONTROL_HEADER, FORGET),), secret,
                                                  FORGET, key, None))


def adopt_model_requests(models_value: bytes, partitions: Iterable[int],
                         secret: str = "") -> list[ControlMessage]:
    """One ``adopt-model`` message per partition of ``clicks`` (every partition adopts).

    ``models_value`` is the exact value published on ``models`` for the version; it is
    checked to be a well-formed announcement here, so the trainer never sends one ingest
    would refuse.
    """
    ModelAnnouncement.decode(models_value)
    headers = sign_headers(((CONTROL_HEADER, ADOPT_MODEL),), secret, ADOPT_MODEL,
                           CONTROL_KEY, models_value)
    return [ControlMessage(CONTROL_KEY, models_value, headers, p) for p in sorted(partitions)]


def verify_control(headers: Iterable[tuple[str, bytes]], key: bytes | None,
                   value: bytes | None, secret: str) -> None:
    """Raise ``BadControl("bad_signature")`` unless a control record is signed right.

    No-op without a secret, or for a record that is no ``forget``/``adopt-model``.
    """
    headers = tuple(headers)
    kind = kind_of(headers)
    if kind in CONTROL_KINDS and not verify_signature(headers, secret, kind, key, value):
        raise BadControl("bad_signature", f"{kind.decode()} message is unsigned or its "
                         "signature does not verify")


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
