"""With ``STREAMREC_CONTROL_SECRET`` set, only signed control messages act (issue 9).

Real broker, real ingest service, the real writers: ``streamrec forget`` (a subprocess, with
and without the secret in its environment) and ``TrainerService.publish``. Unsigned
``forget`` and ``adopt-model`` land in ``clicks.dlq`` with reason ``bad_signature``; the
signed ones apply; the ``models`` message the trainer wrote carries a valid signature.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from unit.core.model_store_fakes import publish_fake_model

from streamrec.consumers.train import Trainer, TrainerConfig
from streamrec.consumers.train_service import TrainerService
from streamrec.export.store import ModelStore
from streamrec.producers.synthetic import SyntheticStream
from streamrec.config import Settings
from streamrec.control import ADOPT_MODEL, CONTROL_HEADER, CONTROL_KEY
from streamrec.events import DLQ_REASON, encode_click
from streamrec.signing import MODELS_KIND, verify_signature
from support import applied_events, ingest_service, latest_by_key, produce_raw, read_topic, \
    running_service

pytestmark = pytest.mark.kafka

SECRET = "integration-secret"


def forget_cli(settings: Settings, user: str, secret: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if k != "STREAMREC_CONTROL_SECRET"}
    if secret is not None:
        env["STREAMREC_CONTROL_SECRET"] = secret
    done = subprocess.run([sys.executable, "-m", "streamrec.app.cli", "forget", user,
                           "--bootstrap-servers", settings.bootstrap_servers,
                           "--topic-prefix", settings.topic_prefix],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stdout + done.stderr  # a secret is never printed


def test_only_signed_control_messages_act(kafka_settings: Settings, tmp_path: Path) -> None:
    settings = kafka_settings.replace(learn_every=16, snapshot_every=500,
                                      model_store=str(tmp_path / "models"),
                                      control_secret=SECRET)
    assert SECRET not in repr(settings)
    events = list(SyntheticStream(n_users=30, n_items=60, n_events=600, seed=3).events())
    items = sorted({e.item_id for e in events})
    message = publish_fake_model(tmp_path / "models", items, dim=8, seed=2)
    victim = events[0].user_id
    produce_raw(settings, settings.topics.clicks,
                ((e.user_id.encode(), encode_click(e)) for e in events))

    with running_service(ingest_service(settings)) as ingest:
        read_topic(settings, settings.topics.user_state,
                   until=lambda rs: applied_events(rs) >= len(events), idle_s=0.0)
        forget_cli(settings, victim, secret=None)  # unsigned
        produce_raw(settings, settings.topics.clicks,
                    [(CONTROL_KEY, json.dumps(message).encode())],
                    headers=[(CONTROL_HEADER, ADOPT_MODEL)])  # unsigned adopt-model
        dead = read_topic(settings, settings.topics.dlq, expect=2, idle_s=0.5)
        assert [dict(r.headers)[DLQ_REASON] for r in dead] == [b"bad_signature"] * 2
        assert victim in ingest.processor.all_states()  # type: ignore[attr-defined]

        trainer = TrainerService(settings, Trainer(TrainerConfig(), ModelStore(tmp_path / "models")))
        try:
            trainer.publish(message)  # signed models message, signed adopt-model per partition
        finally:
            trainer.close()
        forget_cli(settings, victim, secret=SECRET)
        read_topic(settings, settings.topics.user_state,
                   until=lambda rs: victim.encode() in latest_by_key(rs)
                   and latest_by_key(rs)[victim.encode()].value is None, idle_s=1.0)
        outcomes = ingest.processor.adoptions_by_outcome  # type: ignore[attr-defined]
        assert outcomes == {"adopted": settings.partitions}
    assert len(read_topic(settings, settings.topics.dlq, expect=2, idle_s=1.0)) == 2
    (current,) = read_topic(settings, settings.topics.models, expect=1, idle_s=0.2)
    assert verify_signature(current.headers, SECRET, MODELS_KIND, current.key, current.value)
    assert not verify_signature(current.headers, "other", MODELS_KIND, current.key, current.value)
