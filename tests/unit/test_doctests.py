"""The ``>>>`` examples in the packages' docstrings run as tests, and none is silently skipped.

One test per module with examples, found by reading the sources (not by importing them), so a
module that fails to import fails its own test instead of the whole collection. Each test also
checks that doctest sees every live prompt in the file: an example placed where doctest does
not look (a comment, a nested function, a wrapper without ``__wrapped__``) would otherwise
document behaviour that nothing verifies. Prompts that hold only a comment (``>>> # ...``)
are prose by doctest's own rule and are not counted. benchmarks/ and scripts/ are not doctested.
"""

from __future__ import annotations

import doctest
import importlib
import logging
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "streamrec"  # one namespace: consumers/, producers/, ... are streamrec.<folder>
# As pytest's --doctest-modules: "..." in an expected output matches anything.
OPTION_FLAGS = doctest.ELLIPSIS
_PROMPT = re.compile(r"^\s*>>>(?: (?P<source>.*))?$")


def live_prompts(source: str) -> int:
    """Lines that start an example doctest runs (a ``>>>`` prompt not blank or a comment)."""
    count = 0
    for line in source.splitlines():
        match = _PROMPT.match(line)
        if match and (match["source"] or "").strip() and not match["source"].lstrip().startswith("#"):
            count += 1
    return count


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_sources() -> list[Path]:
    """Every source of the package; the folders it holds as symlinks (``streamrec/consumers ->
    ../consumers``) are followed, which ``Path.rglob`` would not do, and named from inside it."""
    found = []
    for directory, subdirs, files in os.walk(ROOT / PACKAGE, followlinks=True):
        subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
        found += [Path(directory) / name for name in sorted(files) if name.endswith(".py")]
    return found


def modules_with_examples() -> list[str]:
    return [module_name(path) for path in package_sources()
            if live_prompts(path.read_text("utf-8"))]


MODULES = modules_with_examples()


def test_the_packages_have_examples_to_run() -> None:
    # A wrong ROOT or a renamed package must not turn this file into a test of nothing.
    assert len(MODULES) >= 30, MODULES
    assert {"streamrec.metrics.registry", "streamrec.consumers.drift_trigger"} <= set(MODULES)


@pytest.fixture
def restored_logging():
    """Examples may call ``configure_logging``; the tests after them must not inherit it."""
    root, kafka = logging.getLogger(), logging.getLogger("kafka")
    handlers, level, kafka_level = list(root.handlers), root.level, kafka.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    kafka.setLevel(kafka_level)


@pytest.mark.parametrize("name", MODULES)
def test_module_examples_pass(name: str, restored_logging: None) -> None:
    module = importlib.import_module(name)
    assert module.__file__ is not None
    tests = [test for test in doctest.DocTestFinder().find(module) if test.examples]
    seen = sum(len(test.examples) for test in tests)
    expected = live_prompts(Path(module.__file__).read_text("utf-8"))
    assert seen == expected, (f"{name}: doctest finds {seen} of the {expected} '>>>' examples "
                              f"in the file; the rest sit where doctest does not look")
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=OPTION_FLAGS)
    for test in tests:
        runner.run(test, out=report.append)
    results = runner.summarize(verbose=False)
    assert results.attempted == seen
    assert results.failed == 0, "".join(report)
