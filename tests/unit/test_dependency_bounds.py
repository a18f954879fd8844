"""pyproject's dependency bounds, constraints.txt and the version agree with each other.

- The base install (what ``streamrec[client]`` adds nothing to) is kafka-python and msgspec:
  an app gets neither river, numpy, onnxruntime nor torch.
- Every requirement of the base and of every extra is pinned in constraints.txt (the tested
  versions) and the pin is inside the requirement's bounds: a bound that excludes what the
  tests run, or a pin that drifted outside a bound, fails here.
- ``streamrec --version``, ``streamrec.__version__`` and pyproject's version are one number.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import streamrec

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS: dict[str, list[str]] = PROJECT["optional-dependencies"]
SERVING = {"river", "numpy", "onnxruntime", "torch", "matplotlib"}


def _pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = Version(version)
    return pins


PINS = _pins()
REQUIREMENTS = [(group, Requirement(text)) for group, texts in
                [("base", PROJECT["dependencies"]), *EXTRAS.items()] for text in texts]


def test_the_base_install_is_the_client() -> None:
    names = {canonicalize_name(Requirement(r).name) for r in PROJECT["dependencies"]}
    assert names == {"kafka-python", "msgspec"}
    assert EXTRAS["client"] == []
    assert not names & SERVING


def test_serving_lives_in_the_serve_extra_and_the_others_include_it() -> None:
    assert {canonicalize_name(Requirement(r).name) for r in EXTRAS["serve"]} >= {
        "river", "numpy", "onnxruntime"}
    for extra in ("train", "eval", "dev"):
        assert "streamrec[serve]" in EXTRAS[extra], extra


@pytest.mark.parametrize(("group", "requirement"), [
    pytest.param(g, r, id=f"{g}:{r.name}") for g, r in REQUIREMENTS
    if canonicalize_name(r.name) != "streamrec"])
def test_the_tested_version_is_pinned_and_inside_the_bounds(group: str,
                                                             requirement: Requirement) -> None:
    pin = PINS.get(canonicalize_name(requirement.name))
    assert pin is not None, f"{requirement.name} ({group}) has no pin in constraints.txt"
    assert requirement.specifier.contains(pin, prereleases=True), (
        f"{requirement} ({group}) excludes the tested {requirement.name}=={pin}")
    assert requirement.specifier, f"{requirement.name} ({group}) has no bounds"
    # An upper bound: a next major (or 0.x minor) release is untested.
    assert any(spec.operator in ("<", "~=") for spec in requirement.specifier), str(requirement)


def test_the_venv_runs_the_pinned_versions() -> None:
    # constraints.txt is the venv's freeze: a pin that is not what the tests run is a lie.
    from importlib.metadata import version
    for group, requirement in REQUIREMENTS:
        name = canonicalize_name(requirement.name)
        if name != "streamrec":
            assert Version(version(name)) == PINS[name], name


def test_one_version_everywhere() -> None:
    assert PROJECT["version"] == streamrec.__version__
    done = subprocess.run([sys.executable, "-m", "streamrec.app.cli", "--version"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == f"streamrec {streamrec.__version__}\n"
