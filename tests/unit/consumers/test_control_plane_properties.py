"""Property tests: hostile ``models`` / ``adopt-model`` values and hostile store folders.

Fed to the scorer's model follower (``handle``, and ``accept`` with signatures) and to
ingest's adoption (``IngestProcessor.process``): nothing raises, and every input is
accounted for, exactly once (served or adopted, or skipped and counted by reason).

``STREAMREC_PROPERTY_EXAMPLES`` sets the number of message cases (default 10,000, the
acceptance criterion of ``make test``); store-folder cases touch the disk and run 3% as
many (300 by default).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import shutil
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamrec.consumers.ingest import IngestProcessor
from streamrec.consumers.model_follower import CURRENT_KEY, ModelFollower
from streamrec.export.store import publish_message
from streamrec.config import Settings
from streamrec.control import ADOPT_MODEL, CONTROL_HEADER, CONTROL_KEY
from streamrec.events import ClickEvent, encode_click
from streamrec.records import Record
from streamrec.signing import MODELS_KIND, SIGNATURE_HEADER, sign_headers

EXAMPLES = int(os.environ.get("STREAMREC_PROPERTY_EXAMPLES", "10000"))
STORE_EXAMPLES = max(30, EXAMPLES * 3 // 100)
SECRET = "property-secret"
BATCH = 4
SIGNATURES = ["none", "valid", "junk", "other_key", "twice"]


@pytest.fixture(scope="module")
def world(model_store, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A store holding the real tiny model (v000001) plus an outside copy and a symlink."""
    shared_root, outcome = model_store
    base = tmp_path_factory.mktemp("hostile")
    root, outside = base / "store", base / "outside"
    shutil.copytree(shared_root / outcome.version, root / "v000001")
    shutil.copytree(shared_root / outcome.version, outside / "v000002")
    os.symlink(outside / "v000002", root / "v000002")  # a version folder that is a symlink
    message = publish_message(json.loads((root / "v000001" / "manifest.json").read_text()),
                              root)
    return SimpleNamespace(root=root, outside=outside, message=message, base=base)


def follower(root: Path, secret: str = "") -> ModelFollower:
    return ModelFollower(Settings(model_store=str(root), control_secret=secret),
                         lambda model, message: None, lambda version, reason: None,
                         threads=1, warmup=1)


def ingest(root: Path) -> IngestProcessor:
    processor = IngestProcessor(Settings(learn_every=2, snapshot_every=10_000,
                                         model_store=str(root)))
    event = ClickEvent(event_id="e0", user_id="u0", item_id="i1", type="click", ts=1.0)
    processor.process([Record("clicks", 0, 0, b"u0", encode_click(event))])
    return processor


def adopt_record(offset: int, value: bytes | None) -> Record:
    return Record("clicks", 0, offset, CONTROL_KEY, value,
                  headers=((CONTROL_HEADER, ADOPT_MODEL),))


# -- strategies --------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=16)
nested = st.integers(1, 3000).flatmap(lambda n: st.sampled_from(
    [b"[" * n + b"]" * n, b'{"version": ' + b"[" * n + b"]" * n + b"}",
     b'{"a": ' * n + b"1" + b"}" * n]))


def mutated(world: SimpleNamespace) -> st.SearchStrategy[bytes]:
    real = world.message
    fields = {
        "version": st.sampled_from([real["version"], "v000002", "v000003", "v999999",
                                    "../v000001", "v1", "", None, 7, ["v000001"]])
        | st.text(max_size=12),
        "manifest_sha256": st.sampled_from([real["manifest_sha256"], "0" * 64, "A" * 64,
                                            None, 1.5]) | st.text(max_size=70),
        "path": st.sampled_from([real["path"], str(world.root / ".." / "outside" / "v000002"),
                                 str(world.outside / "v000002"), str(world.root / "v000002"),
                                 "/etc", "/", "", ".", None, "a\x00b", "v000001",
                                 str(world.root)]) | st.text(max_size=30),
        "metrics": json_values,
    }
    return st.fixed_dictionaries({}, optional=fields).map(
        lambda changes: json.dumps({**real, **changes}).encode())


def models_values(world: SimpleNamespace) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()),
                     nested, mutated(world), st.just(json.dumps(world.message).encode()),
                     # Over the 64 KiB cap, built cheaply (hypothesis draws big binaries slowly).
                     st.integers(1, 1000).map(lambda n: json.dumps(
                         {**world.message, "pad": "x" * (64 * 1024 + n)}).encode()))


# -- models messages: the follower and ingest's adopter ---------------------------------
def test_hostile_models_values_are_each_served_or_counted_and_never_raise(world) -> None:
    plain, signed = follower(world.root), follower(world.root, SECRET)
    adopter = ingest(world.root)
    partition_models = adopter.models(0)
    assert partition_models is not None

    cases = [0]

    # Four values per example: the same 10,000 cases at a quarter of hypothesis's
    # per-example overhead (which dominates: each case itself takes microseconds).
    @settings(max_examples=-(-EXAMPLES // BATCH), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(batch=st.lists(st.tuples(models_values(world), st.sampled_from(SIGNATURES)),
                          min_size=BATCH, max_size=BATCH))
    def check(batch: list[tuple[bytes, str]]) -> None:
        for value, signature in batch:
            offer(value, signature)
            cases[0] += 1

    def offer(value: bytes, signature: str) -> None:
        before = sum(plain.outcomes.values())
        plain.handle([value])
        assert sum(plain.outcomes.values()) == before + 1, plain.outcomes

        headers: Any = {
            "none": (), "junk": ((SIGNATURE_HEADER, b"\x00" * 64),),
            "valid": sign_headers((), SECRET, MODELS_KIND, CURRENT_KEY, value),
            "other_key": sign_headers((), SECRET, MODELS_KIND, b"drift", value),
            "twice": sign_headers((), SECRET, MODELS_KIND, CURRENT_KEY, value) * 2,
        }[signature]
        before = sum(signed.outcomes.values())
        signed.accept([SimpleNamespace(key=CURRENT_KEY, value=value, headers=list(headers))])
        assert sum(signed.outcomes.values()) == before + 1, signed.outcomes
        if signature != "valid":
            assert signed.outcomes["bad_signature"] > 0

        # Ingest's adopter itself (``IngestProcessor.process`` adds a snapshot per message,
        # which the store-folder test below covers): one outcome per value.
        before = sum(adopter.adoptions_by_outcome.values())
        adopter.adopter.adopt(partition_models, value)
        assert sum(adopter.adoptions_by_outcome.values()) == before + 1

    check()
    assert cases[0] >= EXAMPLES
    # The real model was offered and served once; nothing outside the store ever was.
    print(dict(plain.outcomes), dict(signed.outcomes), dict(adopter.adoptions_by_outcome))
    assert plain.outcomes["served"] == 1 and plain.current_version == "v000001"
    assert adopter.models(0).adopted_version in (None, "v000001")
    assert plain.outcomes["outside_store"] > 0 and plain.outcomes["bad_message"] > 0


# -- hostile store folders ---------------------------------------------------------------
def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def pickled_npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"pickled": 1}], dtype=object), allow_pickle=True)
    return buffer.getvalue()


def file_contents(world: SimpleNamespace, name: str) -> st.SearchStrategy[bytes | None]:
    real = (world.root / "v000001" / name).read_bytes()
    choices: list[st.SearchStrategy[bytes | None]] = [
        st.just(real), st.binary(max_size=200), st.none(),
        st.just(real[: len(real) // 2]), st.just(real[:-1] + bytes([real[-1] ^ 1]))]
    if name == "item_table.npy":
        table = np.load(io.BytesIO(real))
        poisoned = table.copy()
        poisoned[1, 0] = np.nan
        choices += [st.just(npy(poisoned)), st.just(npy(table.astype(np.float64))),
                    st.just(npy(table[:-1])), st.just(pickled_npy())]
    if name == "items.json":
        choices += [st.just(b'["a", "a"]'), st.just(b"[" * 2000 + b"]" * 2000),
                    st.just(b"\xff\xfe")]
    return st.one_of(*choices)


def manifests(world: SimpleNamespace) -> st.SearchStrategy[Any]:
    real = json.loads((world.root / "v000001" / "manifest.json").read_text())
    return st.one_of(
        st.just(real),
        st.fixed_dictionaries({}, optional={
            "format": st.sampled_from([real["format"], "other", None]),
            "files": st.sampled_from([real["files"], {}, {"../../etc/passwd": "0" * 64},
                                      {k: "0" * 64 for k in real["files"]}, [1], None]),
            "model": st.sampled_from([real["model"], {"max_len": -1}, {}, "x"]),
            "version": st.sampled_from(["v000001", "other", None]),
            "parity": json_values,
        }).map(lambda changes: {**real, **changes}),
        json_values)


@pytest.fixture(scope="module")
def versions() -> itertools.count:
    return itertools.count(10)


def test_hostile_store_folders_are_each_counted_and_never_raise(world, versions) -> None:
    names = ("model.onnx", "items.json", "item_table.npy", "parity.npz")
    seen: Counter[str] = Counter()  # outcomes over every case: the strategies reach them all

    @settings(max_examples=STORE_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(manifest=manifests(world),
           contents=st.tuples(*(file_contents(world, n) for n in names)),
           link=st.sampled_from([None, "items.json", "folder", "manifest.json"]),
           path_form=st.sampled_from(["exact", "dotdot", "none"]), consistent=st.booleans())
    def check(manifest: Any, contents: tuple, link: str | None, path_form: str,
              consistent: bool) -> None:
        version = f"v{next(versions):06d}"
        folder = world.root / version
        if link == "folder":  # the whole version folder is a symlink to a copy outside
            target = world.outside / version
            target.mkdir(parents=True)
            os.symlink(target, folder)
            folder = target
        else:
            folder.mkdir()
        for name, data in zip(names, contents):
            if data is not None:
                (folder / name).write_bytes(data)
        if isinstance(manifest, dict) and manifest.get("version") == "v000001":
            manifest = {**manifest, "version": version}
        if consistent and isinstance(manifest, dict):  # an attacker's self-consistent folder
            manifest = {**manifest, "files": {n: hashlib.sha256(d).hexdigest()
                                              for n, d in zip(names, contents) if d is not None}}
        raw = json.dumps(manifest).encode()
        (folder / "manifest.json").write_bytes(raw)
        if link in ("items.json", "manifest.json") and (folder / link).exists():
            outside = world.outside / f"{version}-{link}"
            outside.parent.mkdir(parents=True, exist_ok=True)
            (folder / link).rename(outside)
            os.symlink(outside, folder / link)
        path = {"exact": str(world.root / version), "none": None,
                "dotdot": str(world.root / ".." / "store" / version)}[path_form]
        value = json.dumps({"version": version, "path": path,
                            "manifest_sha256": hashlib.sha256(raw).hexdigest()}).encode()

        scorer = follower(world.root)
        scorer.handle([value])
        assert sum(scorer.outcomes.values()) == 1, scorer.outcomes
        seen.update(f"scorer:{k}" for k in scorer.outcomes)
        if link is not None:
            assert scorer.outcomes["served"] == 0
        adopter = ingest(world.root)
        adopter.process([adopt_record(1, value)])
        outcomes = adopter.adoptions_by_outcome
        assert sum(outcomes.values()) == 1, outcomes
        seen.update(f"ingest:{k}" for k in outcomes)
        if link is not None and (link == "folder" or (folder / link).is_symlink()):
            assert outcomes["adopted"] == 0, outcomes

    check()
    print(dict(seen))
    # Valid folders are among the cases (so refusals are not all there is), and so are
    # the refusals the issue names.
    assert seen["ingest:adopted"] > 0 and seen["scorer:served"] > 0, seen
    assert all(seen[f"ingest:{r}"] > 0 for r in ("outside_store", "checksum_mismatch",
                                                 "bad_manifest")), seen
