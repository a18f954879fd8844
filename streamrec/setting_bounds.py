"""Rules between settings: each message streamrec builds fits its topic by construction.

``Settings.validate`` runs every rule of ``CROSS_FIELD_RULES`` after the per-field rules of
``streamrec.setting_rules``. A rule returns None, or the wordings of its refusal as (field
to blame, problem ending in what is accepted), the likeliest culprit first: the CLI edge
names the one the user set (``--k 300`` rather than ``max_k``'s default).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from streamrec.setting_rules import RULES

if TYPE_CHECKING:
    from streamrec.config import Settings

CrossFieldRule = Callable[["Settings"], "list[tuple[str, str]] | None"]


def _top_k_within_max_k(s: Settings) -> list[tuple[str, str]] | None:
    if s.top_k <= s.max_k:
        return None
    return [("top_k", f"must not exceed max_k={s.max_k} (accepted: 1 ... max_k)"),
            ("max_k", f"must be at least top_k={s.top_k} (accepted: top_k ... "
                      f"{RULES['max_k'].accepted().split()[-1]})")]


def _event_fits_a_message(s: Settings) -> list[tuple[str, str]] | None:
    if s.max_event_bytes <= s.max_message_bytes:
        return None
    return [("max_event_bytes", f"must not exceed max_message_bytes={s.max_message_bytes} "
             "(accepted: 64 ... max_message_bytes)"),
            ("max_message_bytes", f"must be at least max_event_bytes={s.max_event_bytes} "
             "(accepted: max_event_bytes ... 2147483647)")]


def _snapshot_room_for_a_chunk(s: Settings) -> list[tuple[str, str]] | None:
    if s.snapshot_max_bytes >= s.snapshot_chunk_bytes:
        return None
    return [("snapshot_max_bytes", f"must be at least snapshot_chunk_bytes="
             f"{s.snapshot_chunk_bytes} (accepted: snapshot_chunk_bytes ... 2**40)"),
            ("snapshot_chunk_bytes", f"must not exceed snapshot_max_bytes="
             f"{s.snapshot_max_bytes} (accepted: 1024 ... snapshot_max_bytes)")]


def _recommendation_fits_a_message(s: Settings) -> list[tuple[str, str]] | None:
    size = recommendation_bytes_bound(s)
    if size <= s.max_message_bytes:
        return None
    fitting = max(0, (s.max_message_bytes - recommendation_bytes_bound(s.replace(max_k=0)))
                  // (recommendation_bytes_bound(s.replace(max_k=1))
                      - recommendation_bytes_bound(s.replace(max_k=0))))
    what = (f"a recommendation of max_k={s.max_k} items with ids of max_id_bytes="
            f"{s.max_id_bytes} can take {size} bytes > max_message_bytes={s.max_message_bytes}")
    return [("max_k", f"{what} (accepted: max_k 1 ... {fitting} with these ids and limit)"),
            ("max_id_bytes", f"{what} (accepted: shorter ids, a smaller max_k or a larger "
                             "max_message_bytes)"),
            ("max_message_bytes", f"{what} (accepted: at least {size})")]


def _user_state_fits_its_topic(s: Settings) -> list[tuple[str, str]] | None:
    size = user_state_bytes_bound(s)
    if size <= USER_STATE_MAX_MESSAGE_BYTES:
        return None
    problem = (f"a user state (recent_items={s.recent_items}, max_seen_items="
               f"{s.max_seen_items}, batch_size={s.batch_size}, ids of {s.max_id_bytes} bytes) "
               f"can take {size} bytes > the user-state topic limit "
               f"{USER_STATE_MAX_MESSAGE_BYTES} (accepted: fewer items, a smaller batch_size or "
               "max_id_bytes)")
    return [(name, problem) for name in ("max_seen_items", "recent_items", "batch_size",
                                         "max_id_bytes", "max_embedding_dim")]


CROSS_FIELD_RULES: tuple[CrossFieldRule, ...] = (
    _top_k_within_max_k, _event_fits_a_message, _snapshot_room_for_a_chunk,
    _recommendation_fits_a_message, _user_state_fits_its_topic)


# The ``max.message.bytes`` ``streamrec.transport.topics`` gives user-state (it also carries model
# snapshots); the same number, here so that Settings can check a state fits under it.
USER_STATE_MAX_MESSAGE_BYTES = 32 * 1024 * 1024
# Worst-case JSON bytes of one id of ``max_id_bytes`` UTF-8 bytes: every byte a quote or
# backslash (escaped to two), plus quotes and separator. Control characters are refused.
_ID_OVERHEAD = 4
_FLOAT_BYTES = 26  # the longest float msgspec writes, with separator
_FIXED_BYTES = 2048  # field names, counters, versions, framing


def _id_bytes(settings: Settings) -> int:
    return 2 * settings.max_id_bytes + _ID_OVERHEAD


def recommendation_bytes_bound(settings: Settings) -> int:
    """Upper bound of one recommendation message: ``max_k`` items, each explained.

    Per item: its id, its score, and at most 8 named components (streamrec.consumers.ranking); the
    user and trigger ids come from states, whose ids are bounded in characters (4 bytes
    each at most), and the model version is a store folder name.
    """
    per_item = _id_bytes(settings) + _FLOAT_BYTES + 8 * (32 + _FLOAT_BYTES)
    return _FIXED_BYTES + 4 * 4 * _id_bytes(settings) + settings.max_k * per_item


def user_state_bytes_bound(settings: Settings) -> int:
    """Upper bound of one user-state message as ingest writes it.

    Recent items with their times, seen items, the new events of one batch (id and time),
    the embedding, the user and event ids, type counts (five types).
    """
    ids = settings.recent_items + settings.max_seen_items + settings.batch_size
    times = settings.recent_items + settings.batch_size
    return (_FIXED_BYTES + ids * _id_bytes(settings) + times * _FLOAT_BYTES
            + settings.max_embedding_dim * _FLOAT_BYTES + 2 * _id_bytes(settings))
