"""Where each setting's value came from: flags, ``STREAMREC_*`` variables, a properties file.

The reading half of ``Settings.from_env``. It remembers, per field, how the user wrote the
value (``STREAMREC_TOP_K=300``, ``--k 300``, ``bootstrap.servers=... in FILE``), so that
a value ``Settings.validate`` refuses is named the way the user can find and fix it.
Nothing else reads the environment for settings; ``unknown_variables`` lists the
``STREAMREC_*`` names that no setting (and no tool in ``OTHER_VARIABLES``) reads, so a
typo such as ``STREAMREC_TOPK`` is reported instead of silently ignored.

>>> unknown_variables({"STREAMREC_TOPK": "5", "STREAMREC_SEED": "1", "HOME": "/root"})
['STREAMREC_TOPK is not a streamrec setting and is ignored; did you mean STREAMREC_TOP_K?']
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import TYPE_CHECKING, Mapping

from streamrec.config import ConfigError, shown_value
from streamrec.connection import SECURITY_FIELDS, KafkaSecurity, read_secret_file
from streamrec.setting_rules import RULES, SECRET_SETTINGS

if TYPE_CHECKING:
    from streamrec.config import Settings

PREFIX = "STREAMREC_"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
# Connection variables that are not a Settings field of their own.
CONNECTION_VARIABLES = ("STREAMREC_KAFKA_CONFIG", "STREAMREC_KAFKA_SASL_PASSWORD_FILE",
                        *(f"STREAMREC_KAFKA_{name.upper()}" for name in SECURITY_FIELDS))
# STREAMREC_* variables read by tools around the services, not by Settings: known, so not
# warned about. Add one here when a script, a test or the compose files start reading it.
OTHER_VARIABLES: Mapping[str, str] = {
    "STREAMREC_KAFKA_HOME": "jar cache and state of `streamrec kafka` and the test broker",
    "STREAMREC_DATA": "docker compose: the folder holding the MovieLens u.data",
    "STREAMREC_BIN": "scripts/with-kafka.sh: the streamrec executable to run",
    "STREAMREC_PROPERTY_EXAMPLES": "tests: hostile cases per topic of the property suite",
    "STREAMREC_BROKER_KILL_ALL": "tests/faults: run every broker outage (repeat-broker-kill)",
    "STREAMREC_SCALE_OUT_EVENTS": "tests: ML-100K events of the scale-out runs (tests/scale_out.py)",
    **{f"STREAMREC_SECURE_{who}_PASSWORD": "docker-compose.secure.yml (make-env.sh)"
       for who in ("STORE", "ADMIN", "APP", "INGEST", "SCORE", "TRAIN")},
}


def setting_variables() -> tuple[str, ...]:
    """The variable of every ``Settings`` field, in field order."""
    from streamrec.config import Settings
    return tuple(PREFIX + f.name.upper() for f in dataclasses.fields(Settings)
                 if f.name != "kafka_security")


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One warning line per ``STREAMREC_*`` variable nothing reads, with the likeliest
    meant name (compared without the common prefix, which would make everything alike)."""
    known = {*setting_variables(), *CONNECTION_VARIABLES, *OTHER_VARIABLES}
    suffixes = sorted(name[len(PREFIX):] for name in known)
    lines = []
    for name in sorted(environ):
        if not name.startswith(PREFIX) or name in known:
            continue
        close = difflib.get_close_matches(name[len(PREFIX):], suffixes, n=1, cutoff=0.6)
        hint = f"did you mean {PREFIX}{close[0]}?" if close else "see the settings table in the README"
        lines.append(f"{name} is not a streamrec setting and is ignored; {hint}")
    return lines


def parse_value(name: str, text: str) -> object:
    """``text`` as the type of field ``name``; ``ValueError`` with the accepted range if not."""
    from streamrec.config import Settings
    kind = str(Settings.__dataclass_fields__[name].type)
    rule = RULES[name]
    try:
        if kind == "int":
            return int(text.strip())
        if kind == "float":
            return float(text.strip())
    except ValueError:
        what = "a whole number" if kind == "int" else "a number"
        raise ValueError(f"is not {what} (accepted: {rule.accepted()})") from None
    if name == "log_level":
        return text.strip().lower()
    return text


def log_level(environ: Mapping[str, str], flag: str | None) -> str | None:
    """The log level asked for by ``--log-level`` or ``STREAMREC_LOG_LEVEL``; None if neither."""
    raw, label = (flag, f"--log-level {flag}") if flag is not None else (
        environ.get("STREAMREC_LOG_LEVEL"), f"STREAMREC_LOG_LEVEL={environ.get('STREAMREC_LOG_LEVEL')}")
    if raw is None:
        return None
    value = str(parse_value("log_level", raw))
    problem = RULES["log_level"].problem(value)
    if problem is not None:
        raise ConfigError(f"{label}: {problem}", setting="log_level", problem=problem)
    return value


def read_settings(cls: type[Settings], environ: Mapping[str, str], *, kafka_config: str | None,
                  security_flags: Mapping[str, object], flag_names: Mapping[str, str],
                  overrides: Mapping[str, object]) -> Settings:
    """``Settings`` from (in rising precedence) a properties file, the environment and
    ``overrides`` (flags); validated, a refusal named by the origin of the refused value."""
    values: dict[str, object] = {}
    origins: dict[str, str] = {}
    security: dict[str, object] = {}
    properties_path = kafka_config or environ.get("STREAMREC_KAFKA_CONFIG")
    if properties_path:
        from streamrec.kafka_properties import load_properties
        properties = load_properties(properties_path)
        if properties.bootstrap_servers:
            values["bootstrap_servers"] = properties.bootstrap_servers
            origins["bootstrap_servers"] = (f"bootstrap.servers={properties.bootstrap_servers}"
                                            f" in {properties_path}")
        security.update(properties.security)
    security.update(_security_from_env(environ))
    security.update({k: v for k, v in security_flags.items() if v is not None})
    values["kafka_security"] = KafkaSecurity(**security)  # type: ignore[arg-type]
    if environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        values["bootstrap_servers"] = environ["KAFKA_BOOTSTRAP_SERVERS"]
        origins["bootstrap_servers"] = f"KAFKA_BOOTSTRAP_SERVERS={environ['KAFKA_BOOTSTRAP_SERVERS']}"
    for f in dataclasses.fields(cls):
        variable = PREFIX + f.name.upper()
        raw = environ.get(variable)
        if f.name == "kafka_security" or raw is None:
            continue  # the connection is read field by field above
        label = f"{variable}={'***' if f.name in SECRET_SETTINGS else shown_value(raw)}"
        try:
            values[f.name] = parse_value(f.name, raw)
        except ValueError as exc:
            raise ConfigError(f"{label}: {exc}", setting=f.name, problem=str(exc)) from None
        origins[f.name] = label
    for name, value in overrides.items():
        if value is None:
            continue
        values[name] = value
        if name in flag_names:  # else set by code: named by its field, as validate does
            shown = "***" if name in SECRET_SETTINGS else shown_value(value)
            origins[name] = f"{flag_names[name]} {shown}"
        else:
            origins.pop(name, None)
    settings = cls(**values)  # type: ignore[arg-type]
    try:
        settings.validate()
    except ConfigError as exc:
        # Name the value the user set: the blamed field, else another field of the rule.
        for name, problem in ((exc.setting or "", exc.problem or ""), *exc.alternatives):
            if name in origins and problem:
                raise ConfigError(f"{origins[name]}: {problem}", setting=name,
                                  problem=problem) from None
        raise
    return settings


def _security_from_env(environ: Mapping[str, str]) -> dict[str, object]:
    """``STREAMREC_KAFKA_<FIELD>`` for each ``KafkaSecurity`` field, plus a password file."""
    values: dict[str, object] = {}
    password_file = environ.get("STREAMREC_KAFKA_SASL_PASSWORD_FILE")
    if password_file:
        values["sasl_password"] = read_secret_file(password_file,
                                                   "STREAMREC_KAFKA_SASL_PASSWORD_FILE")
    for name in SECURITY_FIELDS:
        variable = f"STREAMREC_KAFKA_{name.upper()}"
        raw = environ.get(variable)
        if raw is None or (raw == "" and name not in ("sasl_password", "ssl_password")):
            continue
        if name == "ssl_check_hostname":
            if raw.strip().lower() not in _TRUE + _FALSE:
                raise ConfigError(f"{variable}={raw!r}: is not a boolean (accepted: "
                                  f"{', '.join(_TRUE)} or {', '.join(_FALSE)})")
            values[name] = raw.strip().lower() in _TRUE
        elif name in ("security_protocol", "sasl_mechanism"):
            values[name] = raw.strip().upper()
        else:
            values[name] = raw  # secrets too: never echoed in a message
    return values
