#!/usr/bin/env python3
"""Move streamrec onto its floors under the one ``streamrec`` import namespace (issue 12, item 3).

Run from anywhere inside a checkout: ``python scripts/migrate_floors.py [--dry-run]``.

What it does, each step only if it is still to do, so a second run changes nothing and a
branch written against the old layout can be ported by running it there:

1. ``git mv`` the transport modules to ``streamrec/transport/``, the composition modules to
   ``streamrec/app/`` (with ``commands/`` and ``evaluation/``), and the ranking metric formulas
   ``streamrec/evaluation/metrics.py`` to ``streamrec/ranking_metrics.py`` (a contract:
   ``consumers/train_window.py`` uses them). A file is moved only while it is at its old place;
   files a branch added to ``streamrec/commands/`` or ``streamrec/evaluation/`` move too.
2. Create the symlinks ``streamrec/{consumers,producers,online_models,export} -> ../<folder>``,
   so the repository keeps its top-level folders and they install as ``streamrec.<folder>``.
3. Rewrite module paths, token by token (``tokenize``), never prose:
   - import statements: ``import x.y [as z]``, ``from x.y import a``, and
     ``from streamrec import kafka_clients`` (a submodule that moved: the statement is split
     when its names now live in different packages);
   - after a plain ``import consumers.x`` (which binds the name ``consumers``), the dotted uses
     ``consumers.x`` in that file;
   - string literals that are nothing but a dotted module path, optionally with ``:attr``:
     ``monkeypatch.setattr("consumers.model_follower.MAX_BACKOFF_S", ...)``, ``mock.patch``
     targets, ``[sys.executable, "-m", "streamrec.cli"]``, logger names, ``sys.modules`` keys;
   - import statements of ``>>>`` examples in docstrings (doctests run them);
   - in Makefile, Dockerfile, compose files, shell scripts, ``.ci/run`` and README: only
     ``-m <module>`` (``python -m streamrec.cli``);
   - pyproject.toml: the entry point, ``packages.find`` and mypy ``files``.
   Comments, docstrings and prose are left alone, and so is a local variable called
   ``consumers``: only the names an import statement binds are followed.
4. With ``--prose`` (a separate pass, so its result can be its own commit): references in
   comments, docstrings, messages and Markdown/YAML/Makefile text, ``streamrec.runtime`` or
   ``streamrec/runtime.py``, follow their module. A dotted reference is rewritten only when it
   names a module that exists after the move (so ``consumers.append(x)`` stays as it is);
   folder paths such as ``consumers/score.py`` are right as they are.
5. Report what it changed, and root modules of ``streamrec/`` that the floor plan does not
   know (a branch's new module: decide its floor by what it imports).

It does not edit itself (its tables name the old paths on purpose), nor a file that says
``migrate-floors: skip`` (tests whose data are old-layout sources).
"""

from __future__ import annotations

import argparse
import ast
import io
import os
import re
import subprocess
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path

# Root modules of streamrec/ that bind to Kafka or run the processors' loops (floor 4).
TRANSPORT = ("runtime", "bus", "bus_runner", "kafka_clients", "changelog", "assignment",
             "verified_commit", "poison_pill", "recovery_budget", "service_health", "acls",
             "global_reader", "topics", "event_time", "aligned_input")
# Root modules of streamrec/ that compose everything: CLI, demo, broker launcher (floor 5).
APP = ("cli", "services", "pipeline", "argtypes", "kafka_args", "logging_setup",
       "kafka_launcher", "kafka_broker_process", "kafka_broker_config", "kafka_command",
       "kafka_secure")
APP_PACKAGES = ("commands", "evaluation")
# Root modules that stay: the contracts floor (floor 1). Anything else found at the root is
# reported, not moved.
CONTRACTS = ("__init__", "config", "connection", "kafka_properties", "events", "records",
             "control", "messages", "input_bounds", "processor", "signing", "progress",
             "ranking_metrics", "setting_rules", "setting_bounds", "settings_sources",
             # Not a contract: the app-facing re-exports (floor 4 in the import-floors test),
             # but it stays at the root, where apps import it from.
             "client")
FOLDERS = ("consumers", "producers", "online_models", "export")

# Old module -> new module; a name is mapped by its longest mapped prefix.
MODULE_MAP: dict[str, str] = {
    "streamrec.evaluation.metrics": "streamrec.ranking_metrics",
    **{f"streamrec.{name}": f"streamrec.transport.{name}" for name in TRANSPORT},
    **{f"streamrec.{name}": f"streamrec.app.{name}" for name in APP + APP_PACKAGES},
    **{folder: f"streamrec.{folder}" for folder in FOLDERS},
}

PACKAGE_DOCS = {
    "streamrec/transport/__init__.py":
        '"""Floor 4, transport: the Kafka runtime, the in-process bus with the same lifecycle,\n'
        'and the one module that builds every Kafka client (``kafka_clients``).\n\n'
        'Imports only go down: contracts, learners and models, processors; never ``streamrec.app``.\n'
        '"""\n',
    "streamrec/app/__init__.py":
        '"""Floor 5, composition: the ``streamrec`` CLI and its commands, the demo pipeline,\n'
        'replay evaluation and the local Kafka launcher. Nothing below imports from here.\n"""\n',
}

SKIP_DIRS = {".git", ".venv", "venv", "__pycache__", ".mypy_cache", ".pytest_cache", ".kafka",
             "build", "dist", "node_modules", "replay-report", "model-store"}
TEXT_FILES = ("Makefile", "Dockerfile", "README.md", ".ci/run")
TEXT_GLOBS = ("docker-compose*.yml", "scripts/**/*.sh", "scripts/*")
SELF = Path(__file__).resolve()
SKIP_MARK = "migrate-floors: skip"
DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
MODULE_STRING = re.compile(r"(?P<module>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)(?P<attr>:[\w.]+)?")
DASH_M = re.compile(r"(?<![\w-])(?P<flag>-m\s+)(?P<module>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?![\w.])")


def map_module(name: str) -> str | None:
    """The new dotted name for ``name``, or None when nothing in it moved."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        new = MODULE_MAP.get(".".join(parts[:end]))
        if new is not None:
            return ".".join([new, *parts[end:]])
    return None


@dataclass
class Report:
    dry_run: bool
    changes: int = 0

    def say(self, line: str) -> None:
        self.changes += 1
        print(line)


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                          text=True).stdout


def tracked(root: Path, path: str) -> list[str]:
    return [line for line in git(root, "ls-files", "--", path).splitlines() if line]


def move(root: Path, old: str, new: str, report: Report) -> None:
    if not (root / old).exists():
        return
    if (root / new).exists():
        print(f"CONFLICT: both {old} and {new} exist; merge them by hand")
        return
    report.say(f"git mv {old} {new}")
    if not report.dry_run:
        (root / new).parent.mkdir(parents=True, exist_ok=True)
        if tracked(root, old):
            git(root, "mv", old, new)
        else:
            os.rename(root / old, root / new)


def move_files(root: Path, report: Report) -> None:
    move(root, "streamrec/evaluation/metrics.py", "streamrec/ranking_metrics.py", report)
    for name in TRANSPORT:
        move(root, f"streamrec/{name}.py", f"streamrec/transport/{name}.py", report)
    for name in APP:
        move(root, f"streamrec/{name}.py", f"streamrec/app/{name}.py", report)
    for package in APP_PACKAGES:
        old_dir = root / "streamrec" / package
        if not old_dir.is_dir():
            continue
        for path in sorted(old_dir.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                relative = path.relative_to(root / "streamrec")
                move(root, f"streamrec/{relative}", f"streamrec/app/{relative}", report)
        if not report.dry_run:
            for folder in sorted(old_dir.rglob("*"), reverse=True) + [old_dir]:
                if folder.is_dir() and folder.name == "__pycache__":
                    for stale in folder.iterdir():
                        stale.unlink()
                    folder.rmdir()
                elif folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
    for relative, text in PACKAGE_DOCS.items():
        path = root / relative
        if not path.exists():
            report.say(f"create {relative}")
            if not report.dry_run:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, "utf-8")
                git(root, "add", relative)
    for folder in FOLDERS:
        link = root / "streamrec" / folder
        if link.is_symlink() or not (root / folder).is_dir():
            continue
        if link.exists():
            print(f"CONFLICT: streamrec/{folder} exists and is not a symlink; merge by hand")
            continue
        report.say(f"symlink streamrec/{folder} -> ../{folder}")
        if not report.dry_run:
            link.symlink_to(Path("..") / folder, target_is_directory=True)
            git(root, "add", f"streamrec/{folder}")


# --- Python sources -----------------------------------------------------------------------

@dataclass
class Edit:
    start: tuple[int, int]  # (row, col) as tokenize counts: rows from 1, cols in characters
    end: tuple[int, int]
    text: str


def _dotted_at(tokens: list[tokenize.TokenInfo], i: int) -> tuple[str, int]:
    """The dotted name starting at tokens[i] and the index just past it."""
    parts = [tokens[i].string]
    j = i + 1
    while (j + 1 < len(tokens) and tokens[j].type == tokenize.OP and tokens[j].string == "."
           and tokens[j + 1].type == tokenize.NAME):
        parts.append(tokens[j + 1].string)
        j += 2
    return ".".join(parts), j


def _logical_lines(tokens: list[tokenize.TokenInfo]) -> list[list[int]]:
    """Token indices of each logical line, without layout tokens."""
    lines: list[list[int]] = []
    current: list[int] = []
    skip = {tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING,
            tokenize.ENDMARKER}
    for i, token in enumerate(tokens):
        if token.type == tokenize.NEWLINE or (token.type == tokenize.OP and token.string == ";"):
            if current:
                lines.append(current)
            current = []
        elif token.type not in skip:
            current.append(i)
    if current:
        lines.append(current)
    return lines


def _from_import_edits(tokens: list[tokenize.TokenInfo], line: list[int],
                       source_lines: list[str]) -> tuple[list[Edit], list[str]]:
    first = tokens[line[0]]
    if tokens[line[1]].type != tokenize.NAME:  # relative import: "from . import x"
        if tokens[line[1]].string in (".", "..."):
            return [], [f"relative import left alone at line {first.start[0]}"]
        return [], []
    module, after = _dotted_at(tokens, line[1])
    pos = line.index(after)
    if tokens[line[pos]].string != "import":
        return [], []
    names: list[tuple[str, str | None]] = []
    rest = [tokens[k] for k in line[pos + 1:] if tokens[k].string not in ("(", ")")]
    k = 0
    while k < len(rest):
        if rest[k].type != tokenize.NAME:
            k += 1
            continue
        name, asname = rest[k].string, None
        if k + 2 < len(rest) and rest[k + 1].string == "as":
            asname = rest[k + 2].string
            k += 3
        else:
            k += 1
        names.append((name, asname))
    if names == [("*", None)] or not names:
        new_module = map_module(module)
        return ([Edit(tokens[line[1]].start, tokens[line[pos - 1]].end, new_module)]
                if new_module else []), []
    groups: dict[str, list[str]] = {}
    renamed = False
    for name, asname in names:
        full = map_module(f"{module}.{name}")
        if full is None:
            parent, new_name = map_module(module) or module, name
        else:
            parent, new_name = full.rsplit(".", 1)
        if new_name != name:
            renamed = True
            asname = asname or name
        groups.setdefault(parent, []).append(new_name if asname is None else f"{new_name} as {asname}")
    if list(groups) == [module] and not renamed:
        return [], []
    if len(groups) == 1 and not renamed:
        (parent,) = groups
        return [Edit(tokens[line[1]].start, tokens[line[pos - 1]].end, parent)], []
    # Names now live in different packages (or one was renamed): rewrite the statement.
    last = tokens[line[-1]]
    indent = source_lines[first.start[0] - 1][:first.start[1]]
    text = f"\n{indent}".join(f"from {parent} import {', '.join(items)}"
                              for parent, items in groups.items())
    notes = []
    if any(t.type == tokenize.COMMENT for t in tokens
           if first.start[0] <= t.start[0] <= last.end[0]):
        notes.append(f"comments inside the import at line {first.start[0]} dropped: check")
    return [Edit(first.start, last.end, text)], notes


def _import_edits(tokens: list[tokenize.TokenInfo], line: list[int]
                  ) -> tuple[list[Edit], dict[str, str]]:
    """Edits of ``import a.b [as c], ...`` and the bound dotted names to follow in the file."""
    edits: list[Edit] = []
    bound: dict[str, str] = {}
    k = 1
    while k < len(line):
        token = tokens[line[k]]
        if token.type != tokenize.NAME:
            k += 1
            continue
        name, after = _dotted_at(tokens, line[k])
        end_k = line.index(after) if after in line else len(line)
        new = map_module(name)
        aliased = end_k < len(line) and tokens[line[end_k]].string == "as"
        if new is not None:
            edits.append(Edit(token.start, tokens[line[end_k - 1]].end, new))
            if not aliased:
                bound[name] = new
        k = end_k + (2 if aliased else 0) + 1
    return edits, bound


def _usage_edits(tokens: list[tokenize.TokenInfo], bound: dict[str, str],
                 import_rows: set[int]) -> list[Edit]:
    """``consumers.model_adoption.x`` after ``import consumers.model_adoption``."""
    edits: list[Edit] = []
    for i, token in enumerate(tokens):
        if token.type != tokenize.NAME or token.start[0] in import_rows:
            continue
        if i and tokens[i - 1].type == tokenize.OP and tokens[i - 1].string == ".":
            continue
        dotted, after = _dotted_at(tokens, i)
        for old in sorted(bound, key=len, reverse=True):
            if dotted == old or dotted.startswith(old + "."):
                old_parts = old.count(".") + 1
                edits.append(Edit(token.start, tokens[i + 2 * old_parts - 2].end, bound[old]))
                break
    return edits


DOCTEST_LINE = re.compile(r"^(?P<prompt>[ \t]*>>> )(?P<code>(?:import|from) .*)$", re.M)


def _doctest_import_edit(token: tokenize.TokenInfo) -> Edit | None:
    """``>>> from online_models.user_state import UserState`` in a docstring is code too."""
    if ">>>" not in token.string:
        return None

    def replace(match: re.Match[str]) -> str:
        try:
            new, _, _ = rewrite_python(match["code"] + "\n")
        except (SyntaxError, tokenize.TokenError):
            return match[0]
        return match["prompt"] + new.rstrip("\n")

    text = DOCTEST_LINE.sub(replace, token.string)
    return Edit(token.start, token.end, text) if text != token.string else None


def _string_edits(tokens: list[tokenize.TokenInfo]) -> list[Edit]:
    edits = []
    for token in tokens:
        if token.type != tokenize.STRING:
            continue
        doctest_edit = _doctest_import_edit(token)
        if doctest_edit is not None:
            edits.append(doctest_edit)
            continue
        try:
            value = ast.literal_eval(token.string)
        except (ValueError, SyntaxError):
            continue  # f-strings and the like: not a plain module path
        if not isinstance(value, str):
            continue
        match = MODULE_STRING.fullmatch(value)
        if not match:
            continue
        new = map_module(match["module"])
        if new is None or value not in token.string:
            continue
        edits.append(Edit(token.start, token.end,
                          token.string.replace(value, new + (match["attr"] or ""), 1)))
    return edits


def apply_edits(source: str, edits: list[Edit]) -> str:
    lines = source.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def offset(pos: tuple[int, int]) -> int:
        return starts[pos[0] - 1] + pos[1]

    out = source
    for edit in sorted(edits, key=lambda e: offset(e.start), reverse=True):
        out = out[:offset(edit.start)] + edit.text + out[offset(edit.end):]
    return out


def rewrite_python(source: str) -> tuple[str, list[str], list[str]]:
    """The rewritten source, one line per change, and notes for a human."""
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    source_lines = source.splitlines(keepends=True)
    edits: list[Edit] = []
    notes: list[str] = []
    bound: dict[str, str] = {}
    import_rows: set[int] = set()
    for line in _logical_lines(tokens):
        head = tokens[line[0]]
        if head.type != tokenize.NAME or head.string not in ("import", "from") or len(line) < 2:
            continue
        import_rows.update(range(head.start[0], tokens[line[-1]].end[0] + 1))
        if head.string == "from":
            found, more = _from_import_edits(tokens, line, source_lines)
            notes += more
        else:
            found, names = _import_edits(tokens, line)
            bound.update(names)
        edits += found
    edits += _usage_edits(tokens, bound, import_rows)
    edits += _string_edits(tokens)
    if not edits:
        return source, [], notes
    changed = [_describe(source, source_lines, e) for e in sorted(edits, key=lambda e: e.start)]
    new_source = apply_edits(source, edits)
    ast.parse(new_source)  # a rewrite that breaks the syntax must fail loudly, not be written
    return new_source, changed, notes


def _describe(source: str, lines: list[str], edit: Edit) -> str:
    if "\n" not in edit.text:
        return f"{edit.start[0]}: {_span(lines, edit)} -> {edit.text}"
    before = apply_edits(source, [])[_offset(lines, edit.start):_offset(lines, edit.end)]
    gone = [line.strip() for line in before.splitlines() if line not in edit.text.splitlines()]
    came = [line.strip() for line in edit.text.splitlines() if line not in before.splitlines()]
    return f"{edit.start[0]}: {' | '.join(gone)} -> {' | '.join(came)}"


def _offset(lines: list[str], pos: tuple[int, int]) -> int:
    return sum(len(line) for line in lines[:pos[0] - 1]) + pos[1]


def _span(lines: list[str], edit: Edit) -> str:
    if edit.start[0] == edit.end[0]:
        return lines[edit.start[0] - 1][edit.start[1]:edit.end[1]]
    return lines[edit.start[0] - 1][edit.start[1]:].rstrip() + " ..."


# --- other files --------------------------------------------------------------------------

def rewrite_dash_m(text: str) -> tuple[str, list[str]]:
    changed: list[str] = []

    def replace(match: re.Match[str]) -> str:
        new = map_module(match["module"])
        if new is None:
            return match[0]
        changed.append(f"-m {match['module']} -> -m {new}")
        return match["flag"] + new

    return DASH_M.sub(replace, text), changed


PYPROJECT_INCLUDE = re.compile(r'^include = \["streamrec\*", [^\]]*\]$', re.M)
PYPROJECT_FILES = re.compile(r'^files = \["streamrec", [^\]]*\]$', re.M)
ENTRY_POINT = re.compile(r'"(?P<module>[A-Za-z_][\w.]*):(?P<attr>\w+)"')


def rewrite_pyproject(text: str) -> tuple[str, list[str]]:
    changed: list[str] = []
    include = 'include = ["streamrec", "streamrec.*"]'
    text, n = PYPROJECT_INCLUDE.subn(include, text)
    if n:
        changed.append(f"[tool.setuptools.packages.find] {include}")
    files = 'files = ["streamrec"]'
    text, n = PYPROJECT_FILES.subn(files, text)
    if n:
        changed.append(f"[tool.mypy] {files} (follows the symlinked folders)")

    def entry(match: re.Match[str]) -> str:
        new = map_module(match["module"])
        if new is None:
            return match[0]
        changed.append(f"entry point {match['module']}:{match['attr']} -> {new}:{match['attr']}")
        return f'"{new}:{match["attr"]}"'

    return ENTRY_POINT.sub(entry, text), changed


def python_files(root: Path) -> list[Path]:
    found = []
    for directory, subdirs, files in os.walk(root):  # followlinks=False: each file once
        subdirs[:] = sorted(d for d in subdirs if d not in SKIP_DIRS
                            and not d.endswith(".egg-info")
                            and not (Path(directory) / d).is_symlink())
        found += [Path(directory) / f for f in sorted(files) if f.endswith(".py")]
    return [path for path in found if path.resolve() != SELF
            and SKIP_MARK not in path.read_text("utf-8")]


def text_files(root: Path) -> list[Path]:
    found = {root / name for name in TEXT_FILES if (root / name).is_file()}
    for pattern in TEXT_GLOBS:
        found |= {p for p in root.glob(pattern) if p.is_file() and p.suffix != ".py"}
    return sorted(p for p in found if p.resolve() != SELF)


def write(path: Path, text: str, report: Report) -> None:
    if not report.dry_run:
        path.write_text(text, "utf-8")


def rewrite_all(root: Path, report: Report) -> None:
    for path in python_files(root):
        source = path.read_text("utf-8")
        try:
            new, changed, notes = rewrite_python(source)
        except (SyntaxError, tokenize.TokenError) as error:
            print(f"SKIPPED {path.relative_to(root)}: {error}")
            continue
        for note in notes:
            print(f"NOTE {path.relative_to(root)}: {note}")
        if new != source:
            for line in changed:
                report.say(f"{path.relative_to(root)}:{line}")
            write(path, new, report)
    for path in text_files(root):
        text = path.read_text("utf-8")
        new, changed = rewrite_dash_m(text)
        for line in changed:
            report.say(f"{path.relative_to(root)}: {line}")
        if new != text:
            write(path, new, report)
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        text = pyproject.read_text("utf-8")
        new, changed = rewrite_pyproject(text)
        for line in changed:
            report.say(f"pyproject.toml: {line}")
        if new != text:
            write(pyproject, new, report)


# --- prose (--prose) ----------------------------------------------------------------------

PROSE_DOTTED = re.compile(r"(?<![\w./-])(?P<name>(?:streamrec|consumers|producers|online_models|export)"
                          r"(?:\.[A-Za-z_]\w*)+)")
PROSE_PATH = re.compile(r"(?<![\w./-])streamrec/(?P<path>(?:commands|evaluation)/[\w/]*|"
                        r"(?:commands|evaluation)\b|\w+\.py\b)")
PROSE_FILES = ("*.md", "Makefile", "Dockerfile", "docker-compose*.yml", ".ci/run", "scripts/**/*.sh",
               "pyproject.toml", ".dockerignore")


def _module_exists(root: Path, dotted: str) -> bool:
    path = root.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def map_prose_name(root: Path, name: str) -> str | None:
    """The new name of a dotted reference, if the module it names exists after the move."""
    new = map_module(name)
    if new is None:
        return None
    parts = new.split(".")
    mapped_parts = len(new.split(".")) - (len(name.split(".")) - _mapped_prefix_parts(name))
    floor = mapped_parts + (1 if name.split(".")[0] in FOLDERS else 0)
    for end in range(len(parts), floor - 1, -1):
        if _module_exists(root, ".".join(parts[:end])):
            return new
    return None


def _mapped_prefix_parts(name: str) -> int:
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in MODULE_MAP:
            return end
    return 0


def map_prose_path(path: str) -> str | None:
    """``streamrec/runtime.py`` -> ``streamrec/transport/runtime.py`` and the like."""
    if path == "evaluation/metrics.py":
        return "streamrec/ranking_metrics.py"
    head = path.split("/")[0]
    if head in APP_PACKAGES:
        return f"streamrec/app/{path}"
    stem = path[:-3] if path.endswith(".py") else None
    if stem in TRANSPORT:
        return f"streamrec/transport/{path}"
    if stem in APP:
        return f"streamrec/app/{path}"
    return None


def rewrite_prose_text(root: Path, text: str) -> tuple[str, list[str]]:
    changed: list[str] = []

    def dotted(match: re.Match[str]) -> str:
        new = map_prose_name(root, match["name"])
        if new is None:
            return match[0]
        changed.append(f"{match['name']} -> {new}")
        return new

    def path(match: re.Match[str]) -> str:
        new = map_prose_path(match["path"])
        if new is None:
            return match[0]
        changed.append(f"{match[0]} -> {new}")
        return new

    return PROSE_PATH.sub(path, PROSE_DOTTED.sub(dotted, text)), changed


def rewrite_prose_python(root: Path, source: str) -> tuple[str, list[str]]:
    """Comments and string literals (docstrings, messages) of a Python source."""
    edits: list[Edit] = []
    changed: list[str] = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in (tokenize.COMMENT, tokenize.STRING):
            continue
        new, found = rewrite_prose_text(root, token.string)
        if new != token.string:
            edits.append(Edit(token.start, token.end, new))
            changed += [f"{token.start[0]}: {line}" for line in found]
    if not edits:
        return source, []
    new_source = apply_edits(source, edits)
    ast.parse(new_source)
    return new_source, changed


def rewrite_prose(root: Path, report: Report) -> None:
    for path in python_files(root):
        source = path.read_text("utf-8")
        new, changed = rewrite_prose_python(root, source)
        for line in changed:
            report.say(f"{path.relative_to(root)}:{line}")
        if new != source:
            write(path, new, report)
    found: set[Path] = set()
    for pattern in PROSE_FILES:
        found |= {p for p in root.glob(pattern) if p.is_file()}
    for path in sorted(found):
        text = path.read_text("utf-8")
        new, changed = rewrite_prose_text(root, text)
        for line in changed:
            report.say(f"{path.relative_to(root)}: {line}")
        if new != text:
            write(path, new, report)


def unplanned_root_modules(root: Path) -> list[str]:
    known = set(CONTRACTS) | set(TRANSPORT) | set(APP)
    return sorted(p.stem for p in (root / "streamrec").glob("*.py") if p.stem not in known)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the changes, make none")
    parser.add_argument("--prose", action="store_true",
                        help="also rewrite module references in comments, docstrings and docs")
    args = parser.parse_args(argv)
    root = Path(git(Path.cwd(), "rev-parse", "--show-toplevel").strip())
    report = Report(dry_run=args.dry_run)
    move_files(root, report)
    rewrite_all(root, report)
    if args.prose:
        rewrite_prose(root, report)
    for name in unplanned_root_modules(root):
        print(f"UNPLANNED streamrec/{name}.py: not in the floor plan; stays a contract unless "
              f"moved (see TRANSPORT/APP in {SELF.name})")
    print(f"{report.changes} change(s){' (dry run)' if args.dry_run else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
