"""``ModelFollower`` loading rules, driven through ``handle`` (no broker needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from streamrec.consumers.model_follower import ModelFollower
from streamrec.config import Settings
from unit.consumers.trainer_helpers import tampered_copy


class Recorder:
    """The server's side: which models were handed over, which were rejected."""

    def __init__(self, root: Path, secret: str = "") -> None:
        self.models: list[tuple[str, dict]] = []
        self.rejected: list[tuple[str, str]] = []
        self.settings = Settings(model_store=str(root), control_secret=secret)

    def follower(self) -> ModelFollower:
        return ModelFollower(self.settings, lambda model, message: self.models.append(
            (model.version, message)), lambda version, reason: self.rejected.append(
            (version, reason)), threads=1, warmup=1)


def encoded(message: dict) -> bytes:
    return json.dumps(message).encode()


def test_a_verified_model_is_handed_over_once(store) -> None:
    root, first = store
    recorder = Recorder(root)
    follower = recorder.follower()
    assert follower.handle([encoded(first)]) == "v000001"
    assert follower.handle([encoded(first)]) is None  # already serving: skipped
    assert [v for v, _ in recorder.models] == ["v000001"] and recorder.rejected == []
    assert follower.wait_for_version("v000001", timeout=0.1)
    assert follower.outcomes == {"served": 1, "already_serving": 1}


def test_a_tampered_model_is_rejected_and_the_previous_keeps_serving(
        store, caplog) -> None:
    root, first = store
    recorder = Recorder(root)
    follower = recorder.follower()
    follower.handle([encoded(first)])
    bad = tampered_copy(first, root, "v000009")
    assert follower.handle([encoded(bad)]) is None
    assert recorder.rejected[0][0] == "v000009"
    assert recorder.rejected[0][1].startswith("checksum_mismatch")
    assert follower.current_version == "v000001" and len(recorder.models) == 1
    assert "model v000009 rejected, still serving v000001" in caplog.text
    follower.handle([encoded(bad)])  # the same rejected model is not tried again
    assert len(recorder.rejected) == 1 and follower.wait_for_rejection("v000009", 0.1)


def test_newest_first_falls_back_to_the_newest_good_model(store) -> None:
    root, first = store
    recorder = Recorder(root)
    follower = recorder.follower()
    bad = tampered_copy(first, root, "v000002")
    # A restarted scorer reads the history in one poll: only the newest good one loads.
    assert follower.handle([encoded(first), encoded(bad), b"{oops"]) == "v000001"
    assert [v for v, _ in recorder.rejected] == ["unknown", "v000002"]
    assert [v for v, _ in recorder.models] == ["v000001"]


def test_a_failing_on_model_counts_as_a_rejection(store) -> None:
    root, first = store
    rejected: list[tuple[str, str]] = []

    def refuse(model, message) -> None:
        raise RuntimeError("dimension mismatch")

    follower = ModelFollower(Settings(model_store=str(root)), refuse,
                             lambda v, r: rejected.append((v, r)), threads=1, warmup=1)
    assert follower.handle([encoded(first)]) is None
    assert follower.current_version is None
    assert rejected == [("v000001", "on_model_failed: RuntimeError: dimension mismatch")]


def test_the_follower_never_imports_torch() -> None:
    code = ("import sys, streamrec.consumers.model_follower; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
