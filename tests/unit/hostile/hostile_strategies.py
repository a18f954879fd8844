"""Hypothesis strategies for hostile records on streamrec's input topics (reusable).

Every strategy yields ``Case`` objects: a ``Record`` plus what a correct processor must do
with it (``expect``), decided by construction, never by calling the code under test:

- ``"apply"``: a valid click / request / state (or a valid forget / state tombstone);
- ``"reject"``: something no valid input can be — wrong types, NaN tokens, numbers out of
  range, control characters, lone surrogates, oversized ids, lookalikes of the reserved
  prefix, 1,000-deep nesting, truncated JSON, random bytes, missing or non-UTF-8 keys, junk
  control headers, event times out of the window.

Headers that a producer could attach to anything (null values, non-str names, junk bytes)
are added to every kind of case: they never decide the outcome, and they must never make a
dead letter unsendable.

``batches(case_strategy, size)`` draws many records per example, with offsets assigned in
order, so a property runs over thousands of records in a few hundred examples.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, Callable

from hypothesis import strategies as st

from streamrec.online_models.user_state import UserState, encode_state
from streamrec.config import Settings
from streamrec.control import ADOPT_MODEL, CONTROL_HEADER, FORGET
from streamrec.records import Record

SETTINGS = Settings()
NOW_MS = 1_764_633_600_000  # the broker timestamp of generated records (2025-12-02)
NOW_S = NOW_MS / 1000.0
# msgspec raises RecursionError at the interpreter's recursion limit (1,000; hypothesis
# raises it by a few thousand while a test runs): at or above this depth a value is
# refused; valid cases nest far less than this.
DEEP = 5000

RESERVED_LOOKALIKES = ["__streamrec_snapshot__", "__STREAMREC_x", "__StreamRec_control__",
                       "\uff3f\uff3fstreamrec_x", "__\uff53treamrec_x", "__ſtreamrec_x",
                       "\uff3f_STREAMREC_"]
CONTROL_CHARS = ["\x00", "\n", "\x1b", "\x7f", "\x85", "\u2028", "\u202e", "\u200b", "\ufeff"]


def bad_id_json(r: Draw) -> str:
    """The JSON text of an id that no valid input may carry (for any id field)."""
    kind = r.choice((["type", "empty", "long", "wide", "control", "surrogate"]))
    if kind == "type":
        return json.dumps(r.choice(([0, 1.5, None, True, [], {}, ["a"], {"a": 1}])))
    if kind == "empty":
        return '""'
    if kind == "long":
        return json.dumps("i" * r.randint((257, 3000)))
    if kind == "wide":  # 129 two-byte characters: 258 UTF-8 bytes, only 129 characters
        return json.dumps("é" * r.randint((129, 300)))
    base = r.ident()
    at = r.randint((0, len(base)))
    if kind == "control":
        return json.dumps(base[:at] + r.choice((CONTROL_CHARS)) + base[at:])
    return '"' + base[:at].replace('"', "").replace("\\", "") + r.choice((["\\ud800", "\\udfff",
                                                                    "\\udbff"])) + '"'


def deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def _json_object(fields: dict[str, str]) -> bytes:
    """An object from pre-encoded JSON texts (so invalid texts can be spliced in)."""
    return ("{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in fields.items()) + "}").encode(
        "utf-8", "surrogatepass")


@dataclass(frozen=True)
class Case:
    """One generated input and the outcome a correct processor must give it."""

    key: bytes | None
    value: bytes | None
    headers: tuple
    expect: str  # "apply" or "reject"
    what: str  # short description, for failure messages
    timestamp_ms: int = NOW_MS

    def record(self, topic: str, partition: int, offset: int) -> Record:
        return Record(topic, partition, offset, self.key, self.value, self.timestamp_ms,
                      self.headers)


# -- clicks --------------------------------------------------------------------------------
def valid_click_fields(r: Draw) -> dict[str, str]:
    fields = {"event_id": json.dumps(r.ident()), "user_id": json.dumps(r.user()),
              "item_id": json.dumps(r.ident()),
              "type": json.dumps(r.choice((["view", "click", "purchase", "rating"]))),
              "ts": json.dumps(r.choice([0.0, 852_076_800.0, NOW_S, NOW_S + 3600.0])
                               if r.boolean() else r.real(0.0, NOW_S))}
    if r.boolean():
        fields["value"] = json.dumps(r.real(-1e9, 1e9) if r.boolean() else None)
    if r.boolean():
        fields["context"] = json.dumps({r.ident(): r.ident() if r.boolean() else r.real(-1e6, 1e6)})
    if r.randint((0, 9)) == 0:  # unknown fields are ignored, shallow nesting is fine
        fields["extra"] = json.dumps({"a": [[1, {"b": None}]]})
    return fields


_BAD_TS = ["NaN", "Infinity", "-Infinity", "1e400", '"NaN"', '"1.5"', "null", "-1", "1e300",
           "-1e300", "[1]", "{}", "true", str(NOW_S + 86400 * 2), "1" + "0" * 400]


def bad_click_fields(r: Draw, fields: dict[str, str]) -> tuple[dict[str, str], str]:
    """One mutation that makes a valid click invalid, and its name."""
    fields = dict(fields)
    kind = r.choice((["id", "reserved", "type", "ts", "value", "context",
                                 "context_many", "missing", "deep"]))
    if kind == "id":
        name = r.choice((["event_id", "user_id", "item_id"]))
        fields[name] = bad_id_json(r)
    elif kind == "reserved":
        fields["user_id"] = json.dumps(r.choice((RESERVED_LOOKALIKES)))
    elif kind == "type":
        fields["type"] = r.choice((['"CLICK"', '""', "1", "null", '"purchase "']))
    elif kind == "ts":
        fields["ts"] = r.choice((_BAD_TS))
    elif kind == "value":
        fields["value"] = r.choice((['"1"', "[]", "1e400", "NaN", "{}"]))
    elif kind == "context":
        fields["context"] = r.choice((['{"k": null}', '{"k": [1]}', '{"k": {}}',
                                                  '{"k\\n": 1}', '{"": 1}', '[]', '"ctx"',
                                                  '{"k": "' + "v" * 300 + '"}']))
    elif kind == "context_many":
        fields["context"] = json.dumps({f"k{i}": i for i in range(SETTINGS.max_context_entries
                                                                  + r.randint((1, 20)))})
    elif kind == "missing":
        del fields[r.choice((["event_id", "user_id", "item_id", "type", "ts"]))]
    else:
        fields[r.choice((["extra", "context", "ts", "user_id"]))] = deep_json(
            r.randint((DEEP, 6 * DEEP)))
    return fields, kind


def _click_key(fields: dict[str, str]) -> bytes:
    try:
        user = json.loads(fields.get("user_id", '"?"'))
        return str(user).encode("utf-8", "surrogatepass")
    except (ValueError, RecursionError):
        return b"u"


def click_case(r: Draw, hostile: bool) -> Case:
    """A click, a forget or a hostile record for the ``clicks`` topic."""
    headers = tuple(r.headers())
    valid = valid_click_fields(r)
    if not hostile:
        if r.randint((0, 9)) == 0:
            return Case(r.user().encode(), r.maybe_bytes(8),
                        headers + ((CONTROL_HEADER, FORGET),), "apply", "forget")
        return Case(_click_key(valid), _json_object(valid), headers, "apply", "click")
    kind = r.choice((["field", "field", "field", "bytes", "truncated", "empty",
                                 "oversized", "key", "future", "control", "forget"]))
    if kind == "field":
        fields, what = bad_click_fields(r, valid)
        key = _click_key(fields) if "user_id" in fields else b"u"
        return Case(key, _json_object(fields), headers, "reject", f"click.{what}")
    if kind == "bytes":
        value = r.bytes(200)
        return Case(r.maybe_bytes(20), value, headers, "reject", "bytes")
    if kind == "truncated":
        value = _json_object(valid)
        return Case(_click_key(valid), value[:r.randint((0, len(value) - 1))], headers,
                    "reject", "truncated")
    if kind == "empty":
        return Case(r.choice((None, b"u1")), r.choice(([None, b""])),
                    headers, "reject", "empty")
    if kind == "oversized":
        value = _json_object(valid)
        padding = b" " * (SETTINGS.max_event_bytes + 1 - len(value) + r.randint((0, 99)))
        return Case(_click_key(valid), value[:-1] + padding + b"}", headers, "reject",
                    "oversized")
    if kind == "key":
        key = r.choice(([None, b"", b"\xff\xfe", b"someone-else"]))
        return Case(key, _json_object(valid), headers, "reject", "key")
    if kind == "future":
        valid["ts"] = json.dumps(NOW_S + SETTINGS.max_event_ahead_s + r.real(1, 1e12))
        return Case(_click_key(valid), _json_object(valid), headers, "reject", "future")
    if kind == "control":
        junk = r.choice(([b"", b"FORGET", b"forget ", b"\xff", b"adopt"]))
        return Case(_click_key(valid), _json_object(valid),
                    ((CONTROL_HEADER, junk),) + headers, "reject", "control")
    key = r.choice(([None, b"\xff\xfe", b"\xc3(", b"u\x00", b"k" * 257,
                                *(r.encode() for r in RESERVED_LOOKALIKES)]))
    return Case(key, None, headers + ((CONTROL_HEADER, FORGET),), "reject", "forget.key")


# -- requests ------------------------------------------------------------------------------
def request_case(r: Draw, hostile: bool) -> Case:
    headers = tuple(r.headers())
    user = r.user()
    fields = {"request_id": json.dumps(r.ident()), "user_id": json.dumps(user)}
    if r.boolean():
        fields["k"] = json.dumps(r.choice(([None, 0, -5, 1, 10, 200, 201, 10**9,
                                                       2**62, 10**30])))
    if r.boolean():
        fields["exclude_items"] = json.dumps([r.ident() for _ in range(r.randint((0, 5)))])
    if not hostile:
        return Case(user.encode(), _json_object(fields), headers, "apply", "request")
    kind = r.choice((["id", "reserved", "k", "exclude", "excludes", "missing",
                                 "deep", "bytes", "empty", "huge_user"]))
    if kind == "id":
        fields[r.choice((["request_id", "user_id"]))] = bad_id_json(r)
    elif kind == "reserved":
        fields["user_id"] = json.dumps(r.choice((RESERVED_LOOKALIKES)))
    elif kind == "k":
        fields["k"] = r.choice((['"10"', "1.5", "1e400", "NaN", "[]"]))
    elif kind == "exclude":
        fields["exclude_items"] = "[" + bad_id_json(r) + "]"
    elif kind == "excludes":
        fields["exclude_items"] = json.dumps(["i"] * (SETTINGS.max_exclude_items + 1))
    elif kind == "missing":
        del fields[r.choice((["request_id", "user_id"]))]
    elif kind == "deep":
        fields["extra"] = deep_json(r.randint((DEEP, 6 * DEEP)))
    elif kind == "bytes":
        return Case(user.encode(), r.bytes(100), headers, "reject", "bytes")
    elif kind == "empty":
        return Case(None, r.choice(([None, b""])), headers, "reject", "empty")
    else:
        fields["user_id"] = json.dumps("u" * r.choice(([300, 70_000, 1_000_000])))
    return Case(user.encode(), _json_object(fields), headers, "reject", f"request.{kind}")


# -- user states ---------------------------------------------------------------------------
def valid_state(r: Draw, user: str) -> UserState:
    recent = [r.ident() for _ in range(r.randint((0, 8)))]
    return UserState(user_id=user, recent_items=recent, seen_items=sorted(set(recent)),
                     recent_ts=[r.real(0.0, NOW_S) for _ in recent] if r.boolean() else [],
                     event_count=len(recent), type_counts={"click": len(recent)},
                     last_ts=r.real(0.0, NOW_S), last_event_id=r.ident(),
                     source_partition=0, source_offset=r.randint((0, 10**6)),
                     embedding=[r.real(-10, 10) for _ in range(4)] if r.boolean() else None,
                     new_events=[(item, r.real(0.0, NOW_S)) for item in recent[-2:]])


_BAD_STATE_FIELDS = {
    "recent_items": ['"a"', "[1]", "[null]", json.dumps(["i"] * 51), "[" + deep_json(DEEP) + "]"],
    "seen_items": ["{}", json.dumps(["i"] * 5001), '["\\ud800"]', '["i", "j", "i"]'],
    "recent_ts": ["[NaN]", "[-1]", "[1e300]", '["1"]', json.dumps([1.0] * 51),
                  json.dumps([1.0] * 9)],
    "embedding": ["[NaN]", "[1e400]", '["1"]', "[null]", json.dumps([0.0] * 1025)],
    "last_ts": ["1e300", "-1", "NaN", '"0"', str(NOW_S + 86400 * 3)],
    "new_events": ['[["i"]]', '[["i", 1e300]]', '[["i", -5]]', '[[1, 2]]',
                   json.dumps([["i" * 300, 1.0]])],
    "type_counts": ['{"click": "1"}', json.dumps({f"t{i}": 1 for i in range(17)})],
    "event_count": ['"1"', "1.5", "1" + "0" * 30],
    "user_id": ['""', "null", json.dumps("u" * 300)],
}


def state_case(r: Draw, hostile: bool) -> Case:
    """A user-state record: a valid state or tombstone, or a hostile one."""
    headers = tuple(r.headers())
    user = r.user()
    if not hostile:
        if r.randint((0, 7)) == 0:
            return Case(user.encode(), None, headers, "apply", "tombstone")
        return Case(user.encode(), encode_state(valid_state(r, user)), headers, "apply",
                    "state")
    kind = r.choice((["field", "field", "field", "bytes", "key", "mismatch",
                                 "deep", "truncated", "empty"]))
    good = json.loads(encode_state(valid_state(r, user)))
    fields = {k: json.dumps(v) for k, v in good.items()}
    if kind == "field":
        name = r.choice((sorted(_BAD_STATE_FIELDS)))
        fields[name] = r.choice((_BAD_STATE_FIELDS[name]))
        return Case(user.encode(), _json_object(fields), headers, "reject", f"state.{name}")
    if kind == "bytes":
        return Case(user.encode(), r.bytes(100), headers, "reject", "bytes")
    if kind == "key":
        key = r.choice(([None, b"\xff", b"\xc3(", b"u\x00", b"k" * 300]))
        return Case(key, r.choice(([None, _json_object(fields)])), headers,
                    "reject", "state.key")
    if kind == "mismatch":
        return Case(b"another-user", _json_object(fields), headers, "reject", "mismatch")
    if kind == "deep":
        fields["extra"] = deep_json(r.randint((DEEP, 6 * DEEP)))
        return Case(user.encode(), _json_object(fields), headers, "reject", "state.deep")
    if kind == "truncated":
        value = _json_object(fields)
        return Case(user.encode(), value[:r.randint((0, len(value) - 1))], headers,
                    "reject", "truncated")
    return Case(user.encode(), b"", headers, "reject", "empty")


class Draw:
    """The detail of a case, drawn from a seed: cheap enough for 10,000 records a topic.

    Hypothesis chooses each case's kind (valid or hostile) and seed; the many small
    choices inside a case come from ``random.Random(seed)``, about a hundred times faster
    than as hypothesis draws, and still reproducible from the failing example.
    """

    _IDS = ["u1", "u2", "item-ü", "ユーザー", "a" * 256, "é" * 128, 'q"uo\\te', "ok"]
    _USERS = [f"user{i}" for i in range(12)] + ["ü-user", "x" * 256]
    _HEADER_NAMES = ["trace", "app", 7, None, b"bytes-name", "ü", "\ud800"]
    _HEADER_VALUES = [None, b"", b"v", b"\xff\xfe", "str", 12, b"x" * 300]

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def choice(self, options: Any) -> Any:
        return self._random.choice(list(options))

    def randint(self, bounds: tuple[int, int]) -> int:
        return self._random.randint(*bounds)

    def boolean(self) -> bool:
        return self._random.random() < 0.5

    def real(self, low: float, high: float) -> float:
        return self._random.uniform(low, high)

    def ident(self) -> str:
        if self.boolean():
            return self.choice(self._IDS)
        return "".join(chr(self._random.randint(0x21, 0x7e))
                       for _ in range(self._random.randint(1, 12)))

    def user(self) -> str:
        return self.choice(self._USERS)

    def bytes(self, max_size: int) -> bytes:
        return self._random.randbytes(self._random.randint(0, max_size))

    def maybe_bytes(self, max_size: int) -> bytes | None:
        return None if self.boolean() else self.bytes(max_size)

    def headers(self) -> tuple:
        return tuple((self.choice(self._HEADER_NAMES), self.choice(self._HEADER_VALUES))
                     for _ in range(self._random.randint(0, 3)))


def _cases(build: Callable[[Draw, bool], Case], hostile_share: float) -> st.SearchStrategy[Case]:
    return st.builds(lambda hostile, seed: build(Draw(seed), hostile),
                     st.floats(0, 1).map(lambda x: x < hostile_share),
                     st.integers(0, 2**32 - 1))


def click_cases(hostile_share: float = 0.5) -> st.SearchStrategy[Case]:
    """A click, a forget, or a hostile record for the ``clicks`` topic."""
    return _cases(click_case, hostile_share)


def request_cases(hostile_share: float = 0.5) -> st.SearchStrategy[Case]:
    """A request, or a hostile record for the ``requests`` topic."""
    return _cases(request_case, hostile_share)


def state_cases(hostile_share: float = 0.5) -> st.SearchStrategy[Case]:
    """A user state or tombstone, or a hostile record for the ``user-state`` topic."""
    return _cases(state_case, hostile_share)


def batches(cases: Callable[..., st.SearchStrategy[Case]], size: int,
            **kwargs: Any) -> st.SearchStrategy[list[Case]]:
    """Exactly ``size`` cases per example (so the number of cases is examples * size)."""
    return st.lists(cases(**kwargs), min_size=size, max_size=size)


__all__ = ["ADOPT_MODEL", "Case", "NOW_MS", "SETTINGS", "batches", "click_cases",
           "request_cases", "state_cases", "bad_id_json", "Draw", "RESERVED_LOOKALIKES"]
