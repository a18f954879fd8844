"""``pip install .`` adds one top-level import name, ``streamrec``, and real files under it.

The repository keeps ``consumers/``, ``producers/``, ``online_models/`` and ``export/`` at its
top level and links them into the package (``streamrec/consumers -> ../consumers``); setuptools
follows the links when it builds the wheel, so an installed copy holds real files and no link.
Five top-level names (the old layout) would collide with an application's own ``export`` or
``producers`` module.

The build runs on a copy of what the Dockerfile copies (pyproject, README, the package and the
linked folders), so the working tree gets no ``build/`` or ``*.egg-info`` and two runs never
share a build folder. About 10 s on the project's 2-core machine.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("consumers", "producers", "online_models", "export")
PIP_NOISE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("streamrec", *FOLDERS):
        shutil.copytree(ROOT / name, source / name, symlinks=True, ignore=PIP_NOISE)
    target = tmp_path_factory.mktemp("site-packages")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-cache-dir", "--disable-pip-version-check", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    return target


def test_streamrec_is_the_only_new_top_level_name(installed: Path) -> None:
    names = sorted(path.name for path in installed.iterdir())
    packages = [name for name in names if not name.endswith(".dist-info") and name != "bin"]
    assert packages == ["streamrec"], names
    assert [name for name in names if name.endswith(".dist-info")] == ["streamrec-0.1.0.dist-info"]


@pytest.mark.parametrize("folder", FOLDERS)
def test_a_linked_folder_installs_as_real_files(installed: Path, folder: str) -> None:
    package = installed / "streamrec" / folder
    assert package.is_dir() and not package.is_symlink()
    sources = {path.name for path in package.glob("*.py")}
    assert sources == {path.name for path in (ROOT / folder).glob("*.py")}
    assert not any(path.is_symlink() for path in package.rglob("*"))


def test_the_installed_package_holds_every_module(installed: Path) -> None:
    score = installed / "streamrec" / "consumers" / "score.py"
    assert score.is_file() and not score.is_symlink()
    assert score.read_bytes() == (ROOT / "consumers" / "score.py").read_bytes()
    for module in ("transport/runtime.py", "app/cli.py", "app/commands/core.py",
                   "app/evaluation/systems.py", "ranking_metrics.py", "metrics/registry.py"):
        assert (installed / "streamrec" / module).is_file(), module


def test_the_entry_point_names_the_app_cli(installed: Path) -> None:
    (dist_info,) = installed.glob("streamrec-*.dist-info")
    entry_points = (dist_info / "entry_points.txt").read_text()
    assert "streamrec = streamrec.app.cli:main" in entry_points


def test_the_wheel_carries_the_license_the_type_marker_and_the_extras(installed: Path) -> None:
    (dist_info,) = installed.glob("streamrec-*.dist-info")
    licenses = [path.name for path in dist_info.rglob("LICENSE")]
    assert licenses == ["LICENSE"], list(dist_info.rglob("*"))
    assert (installed / "streamrec" / "py.typed").is_file()
    metadata = (dist_info / "METADATA").read_text()
    assert "License-Expression: Apache-2.0" in metadata
    assert "Classifier: Typing :: Typed" in metadata
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist: ")]
    base = [line for line in requires if "extra ==" not in line]
    assert sorted(base) == ["Requires-Dist: kafka-python<4,>=3.0.12",
                            "Requires-Dist: msgspec<1,>=0.23"], base
    assert "Provides-Extra: client" in metadata and "Provides-Extra: serve" in metadata
