"""Ingest trusts the control plane only as far as it proves itself (issue 9), no broker.

adopt-model: only a version newer than the partition holds, only from its own store, with
checksums from the store's manifest; hostile values are skipped and counted. With a control
secret, unsigned or forged forget / adopt-model records are dead-lettered ``bad_signature``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from unit.core.model_store_fakes import adopt_messages, publish_fake_model
from unit.learner_checks import learned_state

from streamrec.consumers.ingest import IngestProcessor
from streamrec.consumers.partition_models import is_snapshot_key
from streamrec.export.store import MANIFEST, ModelStore, publish_message
from streamrec.export.parity import ParityFixture
from streamrec.online_models.user_state import decode_state
from streamrec.config import Settings
from streamrec.control import CONTROL_KEY, ControlMessage, adopt_model_requests, forget_request
from streamrec.events import DLQ_REASON, ClickEvent, encode_click
from streamrec.records import ProcessResult, Record

ITEMS = [f"i{n}" for n in range(40)]
SECRET = "correct horse battery staple"


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


def settings(store: Path, secret: str = "") -> Settings:
    return Settings(top_k=3, learn_every=4, snapshot_every=1000, model_store=str(store),
                    control_secret=secret)


def click(offset: int, user: str = "u1", item: str = "i1") -> Record:
    event = ClickEvent(event_id=f"e{offset}", user_id=user, item_id=item, type="click",
                       ts=float(offset))
    return Record("clicks", 0, offset, user.encode(), encode_click(event), timestamp_ms=1000)


def control(offset: int, message: ControlMessage) -> Record:
    return Record("clicks", 0, offset, message.key, message.value, headers=message.headers)


def adopt_record(offset: int, message: dict, secret: str = "") -> Record:
    value = json.dumps(message, sort_keys=True).encode()
    return control(offset, adopt_model_requests(value, [0], secret)[0])


def warmed(ingest: IngestProcessor, n: int = 12) -> IngestProcessor:
    ingest.process([click(o, f"u{o % 3}", ITEMS[o % 30]) for o in range(n)])
    return ingest


def all_states_decode(result: ProcessResult) -> bool:
    for output in result.outputs:
        if not is_snapshot_key(output.key) and output.value is not None and output.topic.endswith(
                "user-state"):
            state = decode_state(output.value)
            assert all(np.isfinite(state.embedding or [0.0]))
    return True


def test_an_older_version_after_a_newer_one_is_stale_and_a_newer_one_still_adopts(
        store: Path) -> None:
    v1 = publish_fake_model(store, ITEMS, seed=1)
    v2 = publish_fake_model(store, ITEMS, seed=2)
    v3 = publish_fake_model(store, ITEMS, seed=3)
    ingest = warmed(IngestProcessor(settings(store)))
    ingest.process([adopt_record(20, v2)])
    before = learned_state(ingest.models(0).blend)
    ingest.process([adopt_record(21, v1)])  # a replayed old announcement
    assert learned_state(ingest.models(0).blend) == before
    assert ingest.models(0).adopted_version == "v000002"
    ingest.process([adopt_record(22, v3)])
    assert ingest.models(0).adopted_version == "v000003"
    assert ingest.adoptions_by_outcome == {"adopted": 2, "stale_version": 1}


def test_a_folder_outside_the_store_with_self_consistent_checksums_is_refused(
        store: Path, tmp_path: Path) -> None:
    # An attacker's own "store": a perfectly consistent version, manifest sha and all.
    rogue = publish_fake_model(tmp_path / "elsewhere", ITEMS, seed=9, version="v000900")
    store.mkdir()
    ingest = warmed(IngestProcessor(settings(store)))
    ingest.process([adopt_record(20, rogue)])
    # The same version named by a relative escape, and by a symlink placed in the store.
    escape = {**rogue, "path": str(store / ".." / "elsewhere" / "v000900")}
    ingest.process([adopt_record(21, escape)])
    os.symlink(rogue["path"], store / "v000900")
    ingest.process([adopt_record(22, {**rogue, "path": str(store / "v000900")})])
    assert ingest.models(0).adopted_version is None
    assert ingest.adoptions_by_outcome == {"outside_store": 3}
    real = publish_fake_model(store, ITEMS, seed=1, version="v000901")
    ingest.process([adopt_record(23, real)])
    assert ingest.models(0).adopted_version == "v000901"


def test_checksums_come_from_the_store_manifest_not_from_the_message(store: Path) -> None:
    real = publish_fake_model(store, ITEMS, seed=1)
    ingest = warmed(IngestProcessor(settings(store)))
    # The message pins another manifest: refused, whatever else it claims.
    ingest.process([adopt_record(20, {**real, "manifest_sha256": "0" * 64,
                                      "sha256": {"items.json": "0" * 64}})])
    assert ingest.adoptions_by_outcome == {"checksum_mismatch": 1}
    ingest.process([adopt_record(21, real)])
    assert ingest.models(0).adopted_version == real["version"]


def test_an_item_table_with_nan_is_refused_and_states_stay_decodable(store: Path) -> None:
    table = np.random.default_rng(0).normal(size=(len(ITEMS) + 1, 6)).astype(np.float32)
    table[5, 2] = np.nan
    manifest = ModelStore(store).publish(b"graph", ITEMS, table, ParityFixture(),
                                         model_config={"max_len": 8}, exporter="fake", opset=17)
    poisoned = publish_message(manifest, store)
    ingest = warmed(IngestProcessor(settings(store)))
    result = ingest.process([adopt_record(20, poisoned)] + [click(21 + n, "u1", ITEMS[n])
                                                            for n in range(8)])
    assert ingest.adoptions_by_outcome == {"non_finite": 1}
    assert result.processed == 8 and all_states_decode(result)
    good = publish_fake_model(store, ITEMS, seed=4)
    ingest.process([adopt_record(40, good)])
    assert ingest.models(0).adopted_version == good["version"]


@pytest.mark.parametrize("value", [b"[" * 1000 + b"]" * 1000,
                                   b'{"version": ' + b"{\"a\": " * 1000 + b"1" + b"}" * 1001,
                                   b"\xff\xfe\x00", b"", None])
def test_a_hostile_adopt_model_value_is_skipped_and_counted(store: Path,
                                                            value: bytes | None) -> None:
    ingest = warmed(IngestProcessor(settings(store)))
    result = ingest.process([Record("clicks", 0, 20, CONTROL_KEY, value,
                                    headers=(("streamrec.control", b"adopt-model"),)),
                             click(21)])
    assert ingest.adoptions_by_outcome == {"bad_request": 1}
    assert result.processed == 1 and result.rejected == 0


# -- signatures -------------------------------------------------------------------------

def dead_reasons(result: ProcessResult) -> list[bytes]:
    return [dict(o.headers)[DLQ_REASON] for o in result.outputs if o.topic == "clicks.dlq"]


def test_with_a_secret_unsigned_and_forged_forgets_are_dead_lettered(store: Path) -> None:
    ingest = warmed(IngestProcessor(settings(store, SECRET)))
    unsigned = forget_request("u1")
    forged = forget_request("u1", "another secret")
    for_someone_else = forget_request("u2", SECRET)
    stolen = ControlMessage(b"u1", None, for_someone_else.headers)  # u2's signature on u1
    result = ingest.process([control(30, m) for m in (unsigned, forged, stolen)])
    assert dead_reasons(result) == [b"bad_signature"] * 3
    assert "u1" in ingest.users(0)  # nothing was forgotten
    result = ingest.process([control(31, forget_request("u1", SECRET))])
    assert dead_reasons(result) == [] and "u1" not in ingest.users(0)


def test_with_a_secret_only_a_signed_adopt_model_applies(store: Path) -> None:
    model = publish_fake_model(store, ITEMS, seed=1)
    ingest = warmed(IngestProcessor(settings(store, SECRET)))
    value = json.dumps(model, sort_keys=True).encode()
    # A forget's signature does not verify as an adopt-model, nor one made with another key.
    signed_forget = forget_request("x", SECRET).headers
    crossed = ControlMessage(CONTROL_KEY, value, (("streamrec.control", b"adopt-model"),)
                             + signed_forget[1:])
    bad = [adopt_model_requests(value, [0])[0], adopt_model_requests(value, [0], "wrong")[0],
           crossed]
    result = ingest.process([control(20 + n, m) for n, m in enumerate(bad)])
    assert dead_reasons(result) == [b"bad_signature"] * 3
    assert ingest.models(0).adopted_version is None and not ingest.adoptions_by_outcome
    ingest.process([adopt_record(30, model, SECRET)])
    assert ingest.models(0).adopted_version == model["version"]


def test_without_a_secret_signed_and_unsigned_messages_both_apply(store: Path) -> None:
    model = publish_fake_model(store, ITEMS, seed=1)
    ingest = warmed(IngestProcessor(settings(store)))
    result = ingest.process([control(20, forget_request("u1")),
                             control(21, forget_request("u2", SECRET)),
                             adopt_record(22, model)])
    assert dead_reasons(result) == []
    assert "u1" not in ingest.users(0) and "u2" not in ingest.users(0)
    assert ingest.models(0).adopted_version == model["version"]


def test_a_rewarm_ignores_unverifiable_control_records_as_process_did(store: Path) -> None:
    model = publish_fake_model(store, ITEMS, seed=1)
    records = [click(o, f"u{o % 3}", ITEMS[o % 30]) for o in range(10)]
    records += [adopt_record(10, model), control(11, forget_request("u1")),
                click(12, "u2", "i3"), adopt_record(13, model, SECRET)]
    records += [click(o, f"u{o % 3}", ITEMS[o % 30]) for o in range(14, 30)]
    reference = IngestProcessor(settings(store, SECRET))
    reference.process(records)
    restored = IngestProcessor(settings(store, SECRET))
    restored.restore(0, [])
    restored.rewarm(0, records)
    assert learned_state(restored.models(0).blend) == learned_state(reference.models(0).blend)
    assert restored.models(0).adopted_version == reference.models(0).adopted_version \
        == model["version"]


def test_the_fake_store_helpers_agree_with_the_trainer_value(store: Path) -> None:
    model = publish_fake_model(store, ITEMS)
    (message,) = adopt_messages(model, [0])
    assert json.loads(message.value or b"") == model
    assert (store / model["version"] / MANIFEST).is_file()


def test_the_secret_is_read_from_the_environment_and_never_shown() -> None:
    loaded = Settings.from_env({"STREAMREC_CONTROL_SECRET": SECRET,
                                "STREAMREC_MODEL_STORE": "/models"})
    assert loaded.control_secret == SECRET and loaded.model_store == "/models"
    assert SECRET not in repr(loaded) and SECRET not in str(loaded)
    assert Settings().control_secret == ""  # unsigned unless an operator opts in
