"""Imports only go down the floors (DESIGN.md "Components and floors"), under one namespace.

Every module of the ``streamrec`` package (the symlinked folders ``consumers/``,
``producers/``, ``online_models/`` and ``export/`` included, as ``streamrec.<folder>``) is
parsed with ``ast``, never imported, and each of its imports (at the top, inside a function or
under ``TYPE_CHECKING``: a type-only import that runs back up is a design question as well)
must land on the same floor or a lower one. A bare ``import consumers`` is refused anywhere,
tests and benchmarks included: it would load a second copy of the module beside
``streamrec.consumers``.

The planted-import tests feed the checker sources that break each rule, so this file fails
when the checker stops seeing a back-up import. Those sources name the old layout on purpose:
migrate-floors: skip (scripts/migrate_floors.py leaves this file alone)
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "streamrec"
FOLDERS = ("consumers", "producers", "online_models", "export")

CONTRACTS, LEARNERS, PROCESSORS, TRANSPORT, COMPOSITION = 1, 2, 3, 4, 5
FLOOR_NAMES = {1: "contracts", 2: "learners and models", 3: "processors", 4: "transport",
               5: "composition"}

# Module prefix -> floor; the longest prefix wins. Why each line is where it is:
FLOORS: dict[str, int] = {
    # Root modules: settings, connection config, event/record/message schemas, control
    # messages, signing, input bounds, the processor protocol, ranking metric formulas and
    # a stdlib progress line. None of them imports kafka-python or anything above.
    "streamrec": CONTRACTS,
    # Metric families and the standard per-service set are plain data (names are a contract
    # with dashboards); the HTTP server is a socket, and the package re-exports it.
    # The app-facing SDK in one import: it re-exports the publisher and the readers.
    "streamrec.client": TRANSPORT,
    "streamrec.metrics": TRANSPORT,
    "streamrec.metrics.registry": CONTRACTS,
    "streamrec.metrics.service": CONTRACTS,
    "streamrec.online_models": LEARNERS,
    "streamrec.export": LEARNERS,
    # Log readers, the synthetic stream and replay pacing are pure; the publisher, the
    # recommendations reader and delivery accounting are Kafka clients (kafka_clients,
    # verified_commit), so they sit on the transport floor, and the produce CLI on top.
    "streamrec.producers": LEARNERS,
    "streamrec.producers.publisher": TRANSPORT,
    "streamrec.producers.reader": TRANSPORT,
    "streamrec.producers.request_reply": TRANSPORT,
    "streamrec.producers.delivery": TRANSPORT,
    "streamrec.producers.cli": COMPOSITION,
    # Pure processors, except the services that own Kafka clients: following ``models``,
    # reading ``clicks`` windows for training and publishing drift triggers.
    "streamrec.consumers": PROCESSORS,
    "streamrec.consumers.model_follower": TRANSPORT,
    "streamrec.consumers.drift_trigger": TRANSPORT,
    "streamrec.consumers.train_service": TRANSPORT,
    "streamrec.transport": TRANSPORT,
    "streamrec.app": COMPOSITION,
    # Third-party: only the transport floor and above may talk to Kafka.
    "kafka": TRANSPORT,
}


def floor_of(module: str) -> int | None:
    """The floor of ``module`` by its longest prefix in FLOORS; None for other libraries."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        floor = FLOORS.get(".".join(parts[:end]))
        if floor is not None:
            return floor
    return None


def package_modules() -> dict[str, Path]:
    """Every module of the package by dotted name, following the symlinked folders."""
    found: dict[str, Path] = {}
    for directory, subdirs, files in os.walk(PACKAGE, followlinks=True):
        subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            parts = (Path(directory) / name).relative_to(ROOT).with_suffix("").parts
            dotted = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[dotted] = Path(directory) / name
    return found


MODULES = package_modules()


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def imported_modules(module: str, source: str, known: set[str] | dict[str, Path],
                     is_package: bool = False) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in ``source``, wherever it sits.

    ``from a.b import c`` imports ``a.b.c`` when that is a module, else ``a.b``.
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (node.module or "" if not node.level
                    else _resolve_relative(module, is_package, node.level, node.module))
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.append((node.lineno, child if child in known else base))
    return found


def violations(module: str, source: str, known: set[str] | dict[str, Path],
               is_package: bool = False) -> list[str]:
    """Every import of ``module`` that runs back up a floor or names a bare folder."""
    own = floor_of(module)
    assert own is not None, f"{module} has no floor"
    problems = []
    for line, target in imported_modules(module, source, known, is_package):
        top = target.split(".")[0]
        if top in FOLDERS:
            problems.append(f"{module}:{line} imports {target}: bare folder import, "
                            f"use streamrec.{target}")
            continue
        if top == "streamrec" and target not in known:
            problems.append(f"{module}:{line} imports {target}, which is no module of streamrec")
            continue
        floor = floor_of(target)
        if floor is not None and floor > own:
            problems.append(f"{module}:{line} ({FLOOR_NAMES[own]}, floor {own}) imports "
                            f"{target} ({FLOOR_NAMES[floor]}, floor {floor}): an import back up")
    return problems


def test_the_package_holds_every_folder() -> None:
    # A missing symlink or a walk that does not follow it must not make this a test of nothing.
    for folder in FOLDERS:
        assert f"streamrec.{folder}" in MODULES, folder
    assert {"streamrec.consumers.score", "streamrec.transport.runtime", "streamrec.app.cli",
            "streamrec.ranking_metrics"} <= set(MODULES)
    assert len(MODULES) >= 100, len(MODULES)


def test_every_floor_entry_names_a_module() -> None:
    stale = [prefix for prefix in FLOORS if prefix != "kafka" and prefix not in MODULES]
    assert not stale, f"FLOORS names modules that do not exist: {stale}"


def test_imports_only_go_down() -> None:
    problems = [problem for name, path in MODULES.items()
                for problem in violations(name, path.read_text("utf-8"), MODULES,
                                          is_package=path.name == "__init__.py")]
    assert not problems, "\n".join(problems)


_EXAMPLE_IMPORT = re.compile(r"^[ \t]*>>> ((?:import|from) .*)$", re.M)


def example_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of the imports in ``>>>`` examples: doctests run them."""
    found = []
    for match in _EXAMPLE_IMPORT.finditer(source):
        line = source.count("\n", 0, match.start()) + 1
        try:
            found += [(line, target) for _, target in imported_modules("x", match[1], set())]
        except SyntaxError:
            continue  # a continued statement ("... ") is not worth parsing for this
    return found


def bare_folder_imports(path: Path, imports: list[tuple[int, str]]) -> list[str]:
    return [f"{path.relative_to(ROOT)}:{line} imports {target}" for line, target in imports
            if target.split(".")[0] in FOLDERS]


def test_no_bare_folder_imports_outside_the_package_or_in_examples() -> None:
    problems = []
    for folder in ("tests", "benchmarks", "scripts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            source = path.read_text("utf-8")
            problems += bare_folder_imports(path, imported_modules("tests.x", source, MODULES))
    for path in MODULES.values():
        problems += bare_folder_imports(path, example_imports(path.read_text("utf-8")))
    assert not problems, "\n".join(problems)


def test_a_bare_folder_import_in_an_example_is_caught() -> None:
    source = '"""Doc.\n\n>>> from online_models.user_state import UserState\n"""\n'
    assert example_imports(source) == [(3, "online_models.user_state")]


@pytest.mark.parametrize(("module", "floor"), [
    ("streamrec.config", CONTRACTS),
    ("streamrec.metrics.registry", CONTRACTS),
    ("streamrec.metrics", TRANSPORT),
    ("streamrec.metrics.server", TRANSPORT),
    ("streamrec.online_models.fm", LEARNERS),
    ("streamrec.producers.logs", LEARNERS),
    ("streamrec.producers.publisher", TRANSPORT),
    ("streamrec.producers.cli", COMPOSITION),
    ("streamrec.consumers.score", PROCESSORS),
    ("streamrec.consumers.model_follower", TRANSPORT),
    ("streamrec.transport.kafka_clients", TRANSPORT),
    ("streamrec.app.evaluation.systems", COMPOSITION),
    ("kafka.errors", TRANSPORT),
    ("numpy", None),
])
def test_the_longest_prefix_wins(module: str, floor: int | None) -> None:
    assert floor_of(module) == floor


KNOWN = {"streamrec", "streamrec.config", "streamrec.events", "streamrec.metrics",
         "streamrec.metrics.registry", "streamrec.transport", "streamrec.transport.runtime",
         "streamrec.transport.kafka_clients", "streamrec.app", "streamrec.app.pipeline",
         "streamrec.consumers", "streamrec.consumers.score", "streamrec.online_models",
         "streamrec.online_models.fm", "streamrec.export", "streamrec.export.store",
         "streamrec.producers", "streamrec.producers.publisher", "streamrec.producers.logs"}


@pytest.mark.parametrize(("module", "source", "is_package"), [
    ("streamrec.config", "from streamrec.transport import runtime\n", False),
    ("streamrec.events", "import streamrec.online_models.fm\n", False),
    ("streamrec.online_models.fm", "from streamrec.consumers.score import ScoreProcessor\n",
     False),
    ("streamrec.export.store", "from streamrec.transport.kafka_clients import admin\n", False),
    ("streamrec.consumers.score", "import streamrec.transport.kafka_clients\n", False),
    ("streamrec.consumers.score", "from kafka import KafkaConsumer\n", False),
    ("streamrec.consumers.score",
     "def later():\n    from streamrec.app import pipeline\n    return pipeline\n", False),
    ("streamrec.consumers.score",
     "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
     "    from streamrec.metrics import MetricsRegistry\n", False),
    ("streamrec.consumers.score", "from ..transport import runtime\n", False),
    ("streamrec.producers.logs", "from streamrec.producers.publisher import ClickPublisher\n",
     False),
    ("streamrec.transport.runtime", "from streamrec.app.pipeline import run\n", False),
    ("streamrec.transport.runtime", "from ..app import pipeline\n", False),
    ("streamrec.app", "import consumers.score\n", True),
    ("streamrec.app.cli", "from online_models.fm import OnlineFM\n", False),
    ("streamrec.app.cli", "from streamrec.runtime import ConsumerLoop\n", False),
])
def test_a_planted_import_is_caught(module: str, source: str, is_package: bool) -> None:
    found = violations(module, source, KNOWN | {module}, is_package)
    assert len(found) == 1, found


@pytest.mark.parametrize(("module", "source"), [
    ("streamrec.consumers.score", "from streamrec.online_models.fm import OnlineFM\n"
                                  "from streamrec.metrics.registry import MetricsRegistry\n"),
    ("streamrec.consumers.score", "from streamrec.consumers import score\nimport numpy\n"),
    ("streamrec.export.store", "from streamrec.online_models import fm\n"),
    ("streamrec.producers.publisher", "from streamrec.transport import kafka_clients\n"
                                      "from kafka.errors import KafkaError\n"),
    ("streamrec.app.cli", "from streamrec.transport.runtime import x\nfrom streamrec import config\n"),
    ("streamrec.transport.runtime", "from . import kafka_clients\n"),
])
def test_an_import_down_or_level_passes(module: str, source: str) -> None:
    assert violations(module, source, KNOWN | {module}) == []
