"""Log readers: each format, event-time order with stable ties, bad lines, ML-100K."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamrec.producers.logs import LogFormatError, ReadStats, iter_log, read_log, sniff_format

ML100K = Path("/work/shared/data/ml-100k/u.data")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_movielens_u_data_sorted_with_stable_ties(tmp_path: Path) -> None:
    path = write(tmp_path, "u.data", "1\t10\t4\t300\n2\t20\t5\t100\n3\t30\t1\t300\n4\t40\t2\t100\n")
    events = read_log(path, "movielens")
    assert [e.user_id for e in events] == ["2", "4", "1", "3"]  # ties keep file order
    first = events[0]
    assert (first.item_id, first.type, first.value, first.ts) == ("20", "rating", 5.0, 100.0)
    assert first.event_id == "2-20-100-2"


def test_movielens_ratings_csv_and_dat_detected(tmp_path: Path) -> None:
    csv_path = write(tmp_path, "ratings.csv",
                     "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n1,29,3.5,1260759100\n")
    events = read_log(csv_path, "movielens")
    assert [(e.item_id, e.value) for e in events] == [("29", 3.5), ("31", 2.5)]
    assert events[0].event_id == "1-29-1260759100-3"
    dat_path = write(tmp_path, "ratings.dat", "1::1193::5::978300760\n")
    assert read_log(dat_path, "movielens")[0].item_id == "1193"


def test_movielens_bad_line_raises_with_location(tmp_path: Path) -> None:
    path = write(tmp_path, "u.data", "1\t10\t4\t300\n2\t20\tfive\t100\n")
    with pytest.raises(LogFormatError) as info:
        read_log(path, "movielens")
    assert info.value.line_no == 2 and info.value.path == str(path)
    assert "u.data:2:" in str(info.value)


def test_skip_counts_bad_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "u.data", "1\t10\t4\t300\nbroken\n\n2\t20\t5\tnan\n3\t30\t1\t1\n")
    stats = ReadStats()
    events = read_log(path, "movielens", on_error="skip", stats=stats)
    assert [e.user_id for e in events] == ["3", "1"]
    assert (stats.lines, stats.events, stats.skipped) == (4, 2, 2)
    assert [e.line_no for e in stats.errors] == [2, 4]


def test_csv_defaults_context_and_generated_ids(tmp_path: Path) -> None:
    path = write(tmp_path, "log.csv",
                 "user_id,item_id,ts,device,value,type,event_id\n"
                 "u1,i1,20,mobile,,,\n"
                 "u2,i2,10,web,2.5,purchase,e-42\n")
    first, second = read_log(path, "csv")
    assert (first.event_id, first.type, first.value, first.context) == (
        "e-42", "purchase", 2.5, {"device": "web"})
    assert (second.event_id, second.type, second.value) == ("u1-i1-20-2", "click", None)


@pytest.mark.parametrize("text, reason", [
    ("user_id,item_id\nu1,i1\n", "required column"),
    ("user_id,item_id,ts\nu1,i1,\n", "ts"),
    ("user_id,item_id,ts\nu1,i1,soon\n", "number"),
    ("user_id,item_id,ts\nu1,i1,1,extra\n", "columns"),
    ("user_id,item_id,ts,type\nu1,i1,1,like\n", "type"),
    ("user_id,item_id,ts\n,i1,1\n", "user_id"),
])
def test_csv_errors(tmp_path: Path, text: str, reason: str) -> None:
    with pytest.raises(LogFormatError, match=reason):
        read_log(write(tmp_path, "log.csv", text), "csv")


def test_jsonl_round_trip_and_errors(tmp_path: Path) -> None:
    rows = [{"event_id": "a", "user_id": "u1", "item_id": "i1", "type": "view", "ts": 5.0},
            {"event_id": "b", "user_id": "u2", "item_id": "i2", "type": "click", "ts": 1.0,
             "value": 1.0, "context": {"page": "home"}, "unknown": 1}]
    path = write(tmp_path, "log.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert [e.event_id for e in read_log(path, "jsonl")] == ["b", "a"]
    bad = write(tmp_path, "bad.jsonl", json.dumps(rows[0]) + "\n{not json\n")
    with pytest.raises(LogFormatError, match="bad_json") as info:
        read_log(bad, "jsonl")
    assert info.value.line_no == 2


def test_limit_and_unknown_format(tmp_path: Path) -> None:
    path = write(tmp_path, "u.data", "".join(f"{i}\t1\t1\t{100 - i}\n" for i in range(10)))
    assert len(read_log(path, "movielens", limit=3)) == 3
    assert [e.user_id for e in iter_log(path, "movielens", limit=2)] == ["0", "1"]
    with pytest.raises(ValueError, match="unknown log format"):
        read_log(path, "parquet")  # type: ignore[arg-type]


def test_sniff_format(tmp_path: Path) -> None:
    assert sniff_format(write(tmp_path, "a", "1\t2\t3\t4\n")) == "movielens"
    assert sniff_format(write(tmp_path, "b", '{"user_id": "u"}\n')) == "jsonl"
    assert sniff_format(write(tmp_path, "c", "user_id,item_id,ts\n")) == "csv"


@pytest.mark.skipif(not ML100K.exists(), reason="MovieLens 100K not available")
def test_movielens_100k() -> None:
    events = read_log(ML100K, "movielens")
    assert len(events) == 100_000
    assert all(a.ts <= b.ts for a, b in zip(events, events[1:]))
    assert len({e.event_id for e in events}) == 100_000
