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
            # As an uninstalled library fails (ModuleNotFoundError is an ImportError).
            raise ModuleNotFoundError("blocked in the client install: " + name, name=name)
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


def _cli(*argv: str) -> subprocess.CompletedProcess:
    return _run("import runpy; sys.argv = ['streamrec', *%r]\n"
                "runpy.run_module('streamrec.app.cli', run_name='__main__', alter_sys=True)\n"
                % (argv,))


def test_the_cli_of_a_client_install_answers_and_names_the_extra() -> None:
    version = _cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("streamrec "), version.stderr
    listed = _cli("--help")
    assert listed.returncode == 0, listed.stderr
    assert "produce" in listed.stdout and "streamrec[serve]" in listed.stdout
    schema = _cli("schema", "--topic", "recommendations")
    assert schema.returncode == 0 and '"Recommendation"' in schema.stdout, schema.stderr
    for argv in (("produce", "synthetic", "--rate", "5"), ("replay", "--help"), ("demo",)):
        done = _cli(*argv)
        assert done.returncode == 2, (argv, done.stderr)
        assert done.stderr.startswith(f"streamrec: error: streamrec {argv[0]} needs "), done.stderr
        assert "pip install 'streamrec[serve]'" in done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
