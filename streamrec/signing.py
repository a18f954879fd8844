"""HMAC-SHA256 signatures of control-plane messages (``forget``, ``adopt-model``, ``models``).

With a control secret set (``Settings.control_secret``, env ``STREAMREC_CONTROL_SECRET``)
every writer of the control plane adds a ``streamrec.signature`` header, and every reader
refuses a record whose header is missing or wrong. The signed bytes are::

    b"streamrec-signature-v1" | kind | key | value

each part length-prefixed (8 bytes, big-endian; a missing key or value has its own marker),
so no two (kind, key, value) triples sign the same bytes: a signature for one user's
``forget`` does not verify for another user, nor as an ``adopt-model`` or a ``models``
message. The signature proves who wrote a message, not when: a replayed old message
verifies, which is why ingest and the scorer also refuse versions older than they hold.
It is not encryption: values stay readable to anyone who can read the topic.

>>> headers = sign_headers((), "s3cret", b"forget", b"u1", None)
>>> verify_signature(headers, "s3cret", b"forget", b"u1", None)
True
>>> verify_signature(headers, "s3cret", b"forget", b"u2", None)
False
>>> verify_signature((), "", b"forget", b"u1", None)  # no secret: nothing to check
True
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Iterable

SIGNATURE_HEADER = "streamrec.signature"
_DOMAIN = b"streamrec-signature-v1"
_ABSENT = b"\xff" * 8  # marks a None key or value, distinct from any length prefix
# Kinds of signed messages. Control messages on clicks sign with their control kind
# (``forget``, ``adopt-model``); every record on ``models`` signs with ``MODELS_KIND``.
MODELS_KIND = b"models"


def _part(data: bytes | None) -> bytes:
    return _ABSENT if data is None else len(data).to_bytes(8, "big") + data


def signature(secret: str, kind: bytes, key: bytes | None, value: bytes | None) -> bytes:
    """Hex HMAC-SHA256 of (kind, key, value) under ``secret`` (ASCII bytes, a header value)."""
    message = _part(_DOMAIN) + _part(kind) + _part(key) + _part(value)
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest().encode()


def sign_headers(headers: Iterable[tuple[str, bytes]], secret: str, kind: bytes,
                 key: bytes | None, value: bytes | None) -> tuple[tuple[str, bytes], ...]:
    """``headers`` plus the signature header; unchanged when ``secret`` is empty."""
    kept = tuple((k, v) for k, v in headers if k != SIGNATURE_HEADER)
    if not secret:
        return kept
    return kept + ((SIGNATURE_HEADER, signature(secret, kind, key, value)),)


def verify_signature(headers: Iterable[tuple[str, bytes]] | None, secret: str, kind: bytes,
                     key: bytes | None, value: bytes | None) -> bool:
    """True if ``secret`` is empty, or exactly one signature header carries the right HMAC.

    Two signature headers are refused: a reader must not have to guess which one counts.
    """
    if not secret:
        return True
    found = [v for k, v in (headers or ()) if k == SIGNATURE_HEADER]
    if len(found) != 1 or not isinstance(found[0], (bytes, bytearray)):
        return False
    return hmac.compare_digest(bytes(found[0]), signature(secret, kind, key, value))
