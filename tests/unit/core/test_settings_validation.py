"""Settings refuse nonsense in one line naming the variable or flag and what is accepted.

The cases (a good and some bad values per setting) live in ``settings_cases``; this file
checks them through the environment, through flags and through the ``streamrec`` command,
and that an unreachable broker ends every broker command in one line, fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamrec.app.cli import build_parser, main
from streamrec.config import ConfigError, Settings
from streamrec.app.kafka_broker_config import pick_free_ports
from streamrec.setting_rules import RULES
from streamrec.settings_sources import OTHER_VARIABLES, parse_value, unknown_variables
from unit.core.settings_cases import CASES

REPO = Path(__file__).resolve().parents[3]
FIELDS = [f.name for f in dataclasses.fields(Settings) if f.name != "kafka_security"]
# Files that name misspelt variables on purpose.
TYPO_EXAMPLES = ("settings_sources.py", "test_settings_validation.py")
# The README shows the warning a typo gets: that one name is an example there, not a variable.
README_TYPOS = {"STREAMREC_TOPK"}
BAD = [(name, bad) for name, (_, bads) in CASES.items() for bad in bads]


def variable(name: str) -> str:
    return f"STREAMREC_{name.upper()}"


def refusal(environ: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(environ)
    return str(caught.value)


def test_every_setting_has_a_rule_and_cases() -> None:
    assert sorted(RULES) == sorted(FIELDS)
    assert sorted(CASES) == sorted(FIELDS)
    assert all(CASES[name][1] for name in FIELDS), "every setting needs a bad value"


def test_defaults_pass_their_own_rules() -> None:
    Settings().validate()


@pytest.mark.parametrize("name", FIELDS)
def test_a_good_value_is_accepted(name: str) -> None:
    good = CASES[name][0]
    settings = Settings.from_env({variable(name): good})
    assert getattr(settings, name) == parse_value(name, good) != getattr(Settings(), name)


@pytest.mark.parametrize(("name", "bad"), BAD)
def test_a_bad_value_is_refused_naming_the_variable_and_the_range(name: str, bad: str) -> None:
    message = refusal({variable(name): bad})
    assert "\n" not in message
    shown = "***" if name == "control_secret" else None
    assert message.startswith(f"{variable(name)}="), message
    if shown:
        assert bad not in message and message.startswith(f"{variable(name)}=***:")
    assert "(accepted: " in message and message.endswith(")"), message


@pytest.mark.parametrize(("name", "bad"), [(n, b) for n, b in BAD
                                           if n not in ("max_k", "snapshot_max_bytes")])
def test_a_single_field_refusal_quotes_that_fields_rule(name: str, bad: str) -> None:
    # (max_k 5 and snapshot_max_bytes 1024 are refused by rules between fields.)
    assert f"(accepted: {RULES[name].accepted()})" in refusal({variable(name): bad})


@pytest.mark.parametrize(("environ", "words"), [
    ({"STREAMREC_ONLINE_WEIGHT": "-3"},
     "STREAMREC_ONLINE_WEIGHT=-3: must be >= 0 (accepted: 0 ... inf, finite)"),
    ({"STREAMREC_FUSION_DEPTH": "-1"},
     "STREAMREC_FUSION_DEPTH=-1: is out of range (accepted: 1 ... 100000)"),
    ({"STREAMREC_METRICS_PORT": "99999"},
     "STREAMREC_METRICS_PORT=99999: is out of range (accepted: 0 ... 65535; 0 = off)"),
    ({"STREAMREC_TOP_K": "300"}, "STREAMREC_TOP_K=300: must not exceed max_k=200"),
    ({"STREAMREC_INGEST_GROUP": "my group"}, "STREAMREC_INGEST_GROUP='my group': holds a"),
    ({"KAFKA_BOOTSTRAP_SERVERS": "kafka:99999"}, "KAFKA_BOOTSTRAP_SERVERS=kafka:99999: port"),
])
def test_refusals_read_as_the_issue_asks(environ: dict[str, str], words: str) -> None:
    assert refusal(environ).startswith(words)


def test_a_value_set_in_code_is_named_by_its_field() -> None:
    with pytest.raises(ConfigError, match=r"^online_weight=-3: must be >= 0 \(accepted"):
        Settings(online_weight=-3).validate()
    with pytest.raises(ConfigError, match=r"^top_k=0: "):
        Settings.from_env({}, top_k=0)


def test_a_flag_value_is_named_by_its_flag() -> None:
    with pytest.raises(ConfigError, match=r"^--k 300: must not exceed max_k=200"):
        Settings.from_env({}, flag_names={"top_k": "--k"}, top_k=300)
    # The flag wins over the variable, and is what gets named.
    with pytest.raises(ConfigError, match=r"^--metrics-port 99999: is out of range"):
        Settings.from_env({"STREAMREC_METRICS_PORT": "9100"},
                          flag_names={"metrics_port": "--metrics-port"}, metrics_port=99999)


def test_a_secret_is_never_shown() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({}, flag_names={"control_secret": "--secret"},
                          control_secret="tiny-secret")
    assert "tiny-secret" not in str(caught.value) and str(caught.value).startswith("--secret ***:")


def test_a_key_password_without_a_key_is_refused() -> None:
    message = refusal({"STREAMREC_KAFKA_SSL_PASSWORD": "pw-123", "STREAMREC_KAFKA_SECURITY_PROTOCOL":
                       "SSL"})
    assert "without ssl_keyfile" in message and "pw-123" not in message and "accepted" in message


# -- unknown variables --------------------------------------------------------------------

def test_a_typo_is_warned_about_with_the_name_it_meant() -> None:
    assert unknown_variables({"STREAMREC_TOPK": "5"}) == [
        "STREAMREC_TOPK is not a streamrec setting and is ignored; did you mean STREAMREC_TOP_K?"]
    assert "did you mean STREAMREC_ONLINE_WEIGHT?" in unknown_variables(
        {"STREAMREC_ONLIN_WEIGHT": "1"})[0]
    assert "did you mean STREAMREC_KAFKA_SASL_USERNAME?" in unknown_variables(
        {"STREAMREC_KAFKA_SASL_USER": "x"})[0]
    assert "README" in unknown_variables({"STREAMREC_ZZZZZZ": "1"})[0]


def test_known_variables_are_not_warned_about() -> None:
    known = {variable(name): "1" for name in FIELDS}
    known.update({name: "1" for name in OTHER_VARIABLES})
    known.update({"STREAMREC_KAFKA_CONFIG": "f", "STREAMREC_KAFKA_SASL_PASSWORD": "p",
                  "STREAMREC_KAFKA_SASL_PASSWORD_FILE": "f", "KAFKA_BOOTSTRAP_SERVERS": "k:1",
                  "PATH": "/bin"})
    assert unknown_variables(known) == []


def test_every_streamrec_variable_the_repository_names_is_known() -> None:
    """A script, test or compose file that starts reading a new STREAMREC_* variable must add
    it to OTHER_VARIABLES (or make it a setting), or every run would warn about it."""
    named: set[str] = set()
    for path in REPO.rglob("*"):
        # Build output (an egg-info's PKG-INFO holds the README) is not the repository's.
        if (".git" in path.parts or ".venv" in path.parts or ".kafka" in path.parts
                or any(part.endswith(".egg-info") or part == "build" for part in path.parts)
                or path.name in TYPO_EXAMPLES or not path.is_file() or path.suffix not in ("", ".py", ".md", ".yml", ".sh",
                                                              ".toml", ".env", ".cfg")):
            continue
        try:
            text = path.read_text(errors="ignore")
        except OSError:
            continue
        # A name ending in "_" is a family (STREAMREC_KAFKA_<FIELD>), not one variable.
        found = set(re.findall(r"\bSTREAMREC_[A-Z0-9_]*[A-Z0-9]\b", text))
        named.update(found - README_TYPOS if path.name == "README.md" else found)
    assert {"STREAMREC_KAFKA_HOME", "STREAMREC_TOP_K"} <= named
    assert unknown_variables(dict.fromkeys(named, "")) == []


# -- the command line ---------------------------------------------------------------------

def _leaf_parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, child in action.choices.items():
            yield from _leaf_parsers(child, (*path, name))


def test_every_command_takes_log_level() -> None:
    leaves = list(_leaf_parsers(build_parser()))
    assert len(leaves) >= 12
    for path, parser in leaves:
        assert any("--log-level" in a.option_strings for a in parser._actions), path


def test_a_bad_log_level_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["acls", "print", "--log-level", "loud"])
    err = capsys.readouterr().err
    assert caught.value.code == 2 and err.count("\n") == 1
    assert "--log-level" in err and "debug | info | warning | error | critical" in err


def test_log_level_from_the_environment_is_validated(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("STREAMREC_LOG_LEVEL", "chatty")
    assert main(["acls", "print"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("streamrec: error: STREAMREC_LOG_LEVEL=chatty: ") and err.count("\n") == 1


@pytest.mark.parametrize(("argv", "words"), [
    (["score", "--metrics-port", "99999"],
     "argument --metrics-port: '99999' is out of range (accepted: 0 ... 65535; 0 = off)"),
    (["ingest", "--batch-size", "0"], "argument --batch-size: '0' is out of range (accepted: 1 ..."),
    (["score", "--k", "many"], "argument --k: 'many' is not a whole number (accepted: 1 ..."),
    (["topics", "create", "--partitions", "0"], "argument --partitions: '0' is out of range"),
    (["ingest", "--connect-timeout", "0"], "argument --connect-timeout: '0' is out of range"),
])
def test_a_bad_flag_is_one_line_naming_the_flag_and_range(argv, words, capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as caught:
        main(argv)
    err = capsys.readouterr().err
    assert caught.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"streamrec: error: {words}"), err


def test_a_flag_refused_by_a_rule_between_fields_is_named_by_its_flag(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["score", "--k", "300", "--bootstrap-servers", "127.0.0.1:1"]) == 2
    assert capsys.readouterr().err == ("streamrec: error: --k 300: must not exceed max_k=200 "
                                       "(accepted: 1 ... max_k)\n")
    assert main(["acls", "print", "--prefix", "my prefix"]) == 2
    assert capsys.readouterr().err.startswith("streamrec: error: --prefix 'my prefix': holds a")


def _streamrec(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    environ.update(env, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "streamrec.app.cli", *argv], cwd=REPO, env=environ,
                          capture_output=True, text=True, timeout=120)


def test_the_command_exits_non_zero_with_one_line_on_a_bad_variable() -> None:
    done = _streamrec({"STREAMREC_ONLINE_WEIGHT": "-3"}, "acls", "print")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == ("streamrec: error: STREAMREC_ONLINE_WEIGHT=-3: must be >= 0 "
                           "(accepted: 0 ... inf, finite)\n")


def test_the_command_warns_about_a_typo_and_goes_on() -> None:
    done = _streamrec({"STREAMREC_TOPK": "5"}, "acls", "print")
    assert done.returncode == 0 and "kafka-acls.sh" in done.stdout
    assert done.stderr == ("streamrec: warning: STREAMREC_TOPK is not a streamrec setting and "
                           "is ignored; did you mean STREAMREC_TOP_K?\n")


# -- an unreachable broker: one line, in about connect_timeout_s, for every broker command --

@pytest.fixture(scope="module")
def closed_address() -> str:
    return f"127.0.0.1:{pick_free_ports(1)[0]}"  # nothing listens there


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "u.data"
    path.write_text("1\t2\t5\t881250949\n2\t3\t4\t881250950\n")
    return path


COMMANDS = {
    "ingest": ["ingest"],
    "score": ["score"],
    "topics": ["topics", "create"],
    "forget": ["forget", "u1"],
    "acls": ["acls", "apply"],
    "train": ["train", "--once", "--store", "{tmp}/store"],
    "produce": ["produce", "synthetic", "--users", "2", "--items", "2", "--events", "2",
                "--quiet"],
    "replay": ["replay", "{log}", "--format", "movielens", "--via-kafka", "--no-progress",
               "--systems", "most-popular", "--out", "{tmp}/out"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_unreachable_broker_is_one_line_and_fast(command, closed_address, log_file,  # type: ignore[no-untyped-def]
                                                    tmp_path, capsys) -> None:
    argv = [part.format(tmp=tmp_path, log=log_file) for part in COMMANDS[command]]
    started = time.monotonic()
    code = main([*argv, "--bootstrap-servers", closed_address, "--connect-timeout", "0.5"])
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"streamrec: error: cannot reach Kafka at {closed_address} "
                          "(PLAINTEXT) within 0.5 s"), err
    assert elapsed < 10, elapsed  # the 0.5 s bound (plus imports), not a 30 s client default


# -- the README's table -------------------------------------------------------------------

def test_the_settings_table_script_lists_every_setting_and_every_refusal() -> None:
    script = [sys.executable, str(REPO / "scripts" / "settings-table")]
    table = subprocess.run(script, capture_output=True, text=True, timeout=120, check=True,
                           cwd=REPO).stdout
    for name in FIELDS:
        assert f"| {name} | `{variable(name)}" in table, name
    assert "| top_k | `STREAMREC_TOP_K` | `--k` | `10` | 1 ... 100000 | recommendations" in table
    assert not [line for line in table.splitlines() if line.endswith("|  |")], "a meaning is missing"
    errors = subprocess.run([*script, "--errors"], capture_output=True, text=True, timeout=120,
                            check=True, cwd=REPO).stdout.splitlines()
    assert len(errors) == 2 + len(FIELDS)
    assert all("`streamrec: error: STREAMREC_" in line for line in errors[2:])
