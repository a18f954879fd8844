import io

import pytest

from streamrec.consumers.ingest import IngestProcessor
from streamrec.transport.bus import InProcessBus, partition_for
from streamrec.transport.bus_runner import InProcessRunner
from streamrec.app.cli import main
from streamrec.config import ConfigError, Settings
from streamrec.events import ClickEvent, encode_click
from streamrec.app.demo import run_demo
from streamrec.records import Output


# Hash values of the Java client's Utils.murmur2 (Kafka's own UtilsTest vectors).
JAVA_MURMUR2 = {b"21": -973932308, b"foobar": -790332482,
                b"a-little-bit-long-string": -985981536,
                b"a-little-bit-longer-string": -1486304829,
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
                b"abc": 479470107}


def test_bus_partitions_keys_like_the_java_client():
    for key, java_hash in JAVA_MURMUR2.items():
        for partitions in (1, 4, 7):
            assert partition_for(key, partitions) == (java_hash & 0x7FFFFFFF) % partitions


def test_runner_reads_each_record_once_in_partition_order():
    settings = Settings(partitions=2)
    bus = InProcessBus(2)
    for i in range(10):
        event = ClickEvent(event_id=str(i), user_id=f"u{i % 3}", item_id=f"i{i}", type="view", ts=i)
        bus.produce(Output(settings.topics.clicks, event.user_id.encode(), encode_click(event)))
    ingest = IngestProcessor(settings)
    runner = InProcessRunner(bus, ingest, [settings.topics.clicks], batch_size=4)
    assert runner.drain() == 10 and runner.drain() == 0
    assert sum(s.event_count for s in ingest.all_states().values()) == 10
    assert ingest.all_states()["u0"].recent_items == ["i0", "i3", "i6", "i9"]


def test_settings_from_env_and_overrides():
    env = {"KAFKA_BOOTSTRAP_SERVERS": "k:1", "STREAMREC_PARTITIONS": "8", "STREAMREC_TOPIC_PREFIX": "x-"}
    settings = Settings.from_env(env, partitions=3)
    assert (settings.bootstrap_servers, settings.partitions) == ("k:1", 3)
    assert settings.topics.user_state == "x-user-state"
    with pytest.raises(ConfigError, match="STREAMREC_PARTITIONS"):
        Settings.from_env({"STREAMREC_PARTITIONS": "many"})
    with pytest.raises(ConfigError, match="top_k"):
        Settings.from_env({}, top_k=0)


@pytest.mark.parametrize("argv", [
    ["ingest", "--batch-size", "0"],
    ["demo", "--events", "ten"],
    ["nonsense"],
    ["topics"],
])
def test_bad_arguments_get_one_line_and_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("streamrec: error:") and "\n" not in err


def test_config_error_from_environment_exits_2(monkeypatch, capsys):
    monkeypatch.setenv("STREAMREC_TOP_K", "-1")
    assert main(["demo", "--events", "10"]) == 2
    err = capsys.readouterr().err
    assert "STREAMREC_TOP_K=-1" in err and "accepted: 1 ..." in err and err.count("\n") == 1


def test_demo_learns_something_beyond_chance():
    out = io.StringIO()
    result = run_demo(Settings(), users=200, items=300, events=6_000, seed=1, chunk=500,
                      deep=False, out=out)
    assert result.users_with_recommendations > 100
    # Random top-10 of ~300 unseen items hits ~3%; popularity on a Zipf catalogue does far better.
    assert result.hit_rate > 0.06
    assert "live recommendations" in out.getvalue() and "HR@10" in out.getvalue()
