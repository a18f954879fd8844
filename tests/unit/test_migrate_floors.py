"""scripts/migrate_floors.py: token-aware rewrites, and a tree it has nothing left to do in.

The lead runs the script on branches written against the old layout, so what it rewrites
and what it leaves alone (prose, a local variable called ``consumers``) is pinned here.
The cases name the old layout on purpose: migrate-floors: skip (the script leaves this file alone)
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "migrate_floors.py"
_spec = importlib.util.spec_from_file_location("migrate_floors", SCRIPT)
assert _spec is not None and _spec.loader is not None
migrate = importlib.util.module_from_spec(_spec)
sys.modules["migrate_floors"] = migrate  # dataclasses look their module up there
_spec.loader.exec_module(migrate)


@pytest.mark.parametrize(("before", "after"), [
    ("from consumers.score import ScoreProcessor\n",
     "from streamrec.consumers.score import ScoreProcessor\n"),
    ("from streamrec.runtime import ProcessorService  # why\n",
     "from streamrec.transport.runtime import ProcessorService  # why\n"),
    ("from streamrec import kafka_clients\n", "from streamrec.transport import kafka_clients\n"),
    ("from streamrec import config, kafka_clients\n",
     "from streamrec import config\nfrom streamrec.transport import kafka_clients\n"),
    ("from streamrec.evaluation import metrics\n",
     "from streamrec import ranking_metrics as metrics\n"),
    ("from streamrec.evaluation import PrequentialEvaluator\n",
     "from streamrec.app.evaluation import PrequentialEvaluator\n"),
    ("from streamrec.evaluation.metrics import ndcg\n", "from streamrec.ranking_metrics import ndcg\n"),
    ("from streamrec.commands.core import register\n",
     "from streamrec.app.commands.core import register\n"),
    ("from export.store import (\n    ModelStore,  # the store\n    load,\n)\n",
     "from streamrec.export.store import (\n    ModelStore,  # the store\n    load,\n)\n"),
    ("def f():\n    from producers import publisher\n    return publisher\n",
     "def f():\n    from streamrec.producers import publisher\n    return publisher\n"),
    ("import online_models.fm as fm\n", "import streamrec.online_models.fm as fm\n"),
    ("import consumers.model_adoption\nx = consumers.model_adoption.load\n",
     "import streamrec.consumers.model_adoption\nx = streamrec.consumers.model_adoption.load\n"),
    ('monkeypatch.setattr("consumers.model_follower.MAX_BACKOFF_S", 0.05)\n',
     'monkeypatch.setattr("streamrec.consumers.model_follower.MAX_BACKOFF_S", 0.05)\n'),
    ('cmd = [sys.executable, "-m", "streamrec.cli", "ingest"]\n',
     'cmd = [sys.executable, "-m", "streamrec.app.cli", "ingest"]\n'),
    ('"""Example.\n\n>>> from online_models.user_state import UserState\n"""\n',
     '"""Example.\n\n>>> from streamrec.online_models.user_state import UserState\n"""\n'),
])
def test_module_paths_are_rewritten(before: str, after: str) -> None:
    new, changed, _ = migrate.rewrite_python(before)
    assert new == after
    assert changed
    assert migrate.rewrite_python(new)[0] == new  # a second run changes nothing


@pytest.mark.parametrize("source", [
    "consumers = []\nconsumers.append(1)\n",                     # a local variable
    "# see consumers.score and streamrec.runtime\n",              # prose in a comment
    '"""The runtime (streamrec.runtime) polls."""\n',             # prose in a docstring
    'HEADER = "streamrec.error.reason"\n',                        # a header name, not a module
    "from streamrec.config import Settings\nimport numpy\n",      # nothing of it moved
    "from streamrec.transport import kafka_clients\n",            # already migrated
])
def test_what_is_not_a_moved_module_path_stays(source: str) -> None:
    assert migrate.rewrite_python(source) == (source, [], [])


def test_make_style_files_rewrite_only_dash_m() -> None:
    text = "run: python -m streamrec.cli demo  # streamrec.cli prose\n\tpython -m pytest\n"
    new, changed = migrate.rewrite_dash_m(text)
    assert new == "run: python -m streamrec.app.cli demo  # streamrec.cli prose\n\tpython -m pytest\n"
    assert len(changed) == 1


def test_prose_follows_only_modules_that_exist() -> None:
    text = "See ``streamrec.runtime``, streamrec/runtime.py and consumers.append(x)."
    new, _ = migrate.rewrite_prose_text(ROOT, text)
    assert new == ("See ``streamrec.transport.runtime``, streamrec/transport/runtime.py and "
                   "consumers.append(x).")


def test_the_tree_is_migrated_and_a_rerun_changes_nothing() -> None:
    # Also catches a new bare "import consumers..." or "streamrec.runtime" written after the move.
    done = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--prose"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "0 change(s) (dry run)", done.stdout
