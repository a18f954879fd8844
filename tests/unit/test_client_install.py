"""``import streamrec.client`` needs kafka-python and msgspec only (the ``client`` install).

A child interpreter gets a meta path finder that raises on river, numpy, onnxruntime,
torch (and matplotlib): if anything on the client's import path reaches for one, the import
fails and so does this test. The planted case shows the blocker does block.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCKED = ("river", "numpy", "onnxruntime", "torch", "matplotlib")

_BLOCKER = f"""
import importlib.abc, sys
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError("blocked in the client install: " + name)
        return None
sys.meta_path.insert(0, Blocked())
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _BLOCKER + code], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_the_client_imports_without_the_serving_libraries() -> None:
    done = _run("import streamrec.client as c, streamrec\n"
                "assert c.__file__.startswith(%r), c.__file__\n"
                "names = [n for n in c.__all__ if getattr(c, n, None) is None]\n"
                "assert not names, names\n"
                "heavy = sorted({m.split('.')[0] for m in sys.modules} & set(%r))\n"
                "assert not heavy, heavy\n"
                "print(c.recommend.__module__, c.RecommendationReader.__module__)\n"
                % (str(ROOT), BLOCKED))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["streamrec.producers.request_reply",
                                   "streamrec.producers.reader"]


def test_the_blocker_blocks() -> None:
    done = _run("import streamrec.online_models.fm\n")
    assert done.returncode != 0 and "blocked in the client install" in done.stderr
