"""Read a Kafka client properties file (``client.properties``, as Kafka's own tools take).

Two steps: ``parse_properties`` reads the ``java.util.Properties`` text format (comments
``#``/``!``, ``key=value``, ``key: value`` or ``key value``, line continuations, ``\\``
escapes); ``security_from_properties`` maps the keys streamrec understands onto
``KafkaSecurity`` field values. Both the Java client's keys (``sasl.jaas.config``,
``ssl.truststore.location``) and librdkafka's (``ssl.ca.location``, ``sasl.username``) are
accepted. Unknown keys are logged at debug level and ignored.

Error messages name the file and the key, never a value: a value may be a password.

>>> props = parse_properties('security.protocol=SASL_SSL\\nsasl.mechanism: SCRAM-SHA-512\\n')
>>> props["sasl.mechanism"]
'SCRAM-SHA-512'
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
# username="..." / password='...' inside a JAAS line; values may hold escaped quotes.
_JAAS_OPTION = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\'|([^\s;]+))')
_JAAS_MODULES = {
    "org.apache.kafka.common.security.scram.ScramLoginModule": "SCRAM",
    "org.apache.kafka.common.security.plain.PlainLoginModule": "PLAIN",
    "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule": "OAUTHBEARER",
}
_PEM_ONLY = ("Python's ssl module reads only PEM: convert it (keytool -exportcert -rfc, or "
             "openssl pkcs12 -nokeys) and set ssl.truststore.type=PEM, or use ssl.ca.location")
# Keys that map one-to-one onto a KafkaSecurity field.
_DIRECT = {
    "security.protocol": "security_protocol",
    "sasl.mechanism": "sasl_mechanism",
    "sasl.mechanisms": "sasl_mechanism",          # librdkafka spelling
    "sasl.username": "sasl_username",
    "sasl.password": "sasl_password",
    "ssl.ca.location": "ssl_cafile",
    "ssl.certificate.location": "ssl_certfile",
    "ssl.key.location": "ssl_keyfile",
    "ssl.key.password": "ssl_password",
}
_HANDLED = {"bootstrap.servers", "sasl.jaas.config", "ssl.truststore.location",
            "ssl.truststore.type", "ssl.keystore.location", "ssl.keystore.type",
            "ssl.keystore.password", "ssl.endpoint.identification.algorithm", *_DIRECT}


@dataclass(frozen=True)
class ClientProperties:
    """What a properties file says: the bootstrap address (or None) and security fields."""

    bootstrap_servers: str | None
    security: dict[str, object]


def _logical_lines(text: str) -> list[str]:
    """Join continued lines (an odd number of trailing backslashes), drop comments."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.lstrip(" \t\f")  # leading blanks never count, continued lines included
        if not pending and (not line or line[0] in "#!"):
            continue
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:
            pending += line[:-1]
            continue
        lines.append(pending + line)
        pending = ""
    if pending:
        lines.append(pending)
    return lines


def _unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[i + 2:i + 6]):
                out.append(chr(int(text[i + 2:i + 6], 16)))
                i += 6
                continue
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def parse_properties(text: str) -> dict[str, str]:
    """Parse ``java.util.Properties`` text; a later key wins, as in Java."""
    result: dict[str, str] = {}
    for line in _logical_lines(text):
        # The key ends at the first unescaped '=', ':' or whitespace.
        i = 0
        while i < len(line) and not (line[i] in "=: \t\f"):
            i += 2 if line[i] == "\\" else 1
        key, rest = line[:i], line[i:].lstrip(" \t\f")
        if rest[:1] in ("=", ":"):
            rest = rest[1:].lstrip(" \t\f")
        result[_unescape(key)] = _unescape(rest)
    return result


def parse_jaas(value: str, source: str) -> tuple[str, dict[str, str]]:
    """(mechanism family, options) of one ``sasl.jaas.config`` login module line."""
    module = value.strip().split(None, 1)[0] if value.strip() else ""
    family = _JAAS_MODULES.get(module)
    if family is None:
        # The module name is not secret; the rest of the line (the password) is.
        raise _error(f"{source}: sasl.jaas.config login module {module[:80]!r} is not "
                     f"supported (use ScramLoginModule, PlainLoginModule or OAuthBearerLoginModule)")
    options: dict[str, str] = {}
    for match in _JAAS_OPTION.finditer(value[len(module):]):
        name, double, single, bare = match.groups()
        raw = double if double is not None else single if single is not None else bare
        options[name] = re.sub(r"\\(.)", r"\1", raw)
    return family, options


def security_from_properties(props: dict[str, str], source: str = "properties") -> ClientProperties:
    """Map the keys we understand onto ``KafkaSecurity`` field values."""
    security: dict[str, object] = {}
    for key, value in props.items():
        if key in _DIRECT:
            security[_DIRECT[key]] = value
        elif key not in _HANDLED:
            log.debug("ignoring Kafka client property streamrec does not use", extra={"key": key})
    jaas = props.get("sasl.jaas.config")
    if jaas:
        family, options = parse_jaas(jaas, source)
        if family != "OAUTHBEARER":
            if "username" not in options or "password" not in options:
                raise _error(f"{source}: sasl.jaas.config needs username=\"...\" and password=\"...\"")
            security.setdefault("sasl_username", options["username"])
            security.setdefault("sasl_password", options["password"])
        if family != "SCRAM":  # PLAIN and OAUTHBEARER name their mechanism; SCRAM has two
            security.setdefault("sasl_mechanism", family)
        mechanism = str(security.get("sasl_mechanism") or "")
        if family != "SCRAM" and mechanism and mechanism != family:
            raise _error(f"{source}: sasl.jaas.config is a {family} login module but "
                         f"sasl.mechanism is {mechanism}")
        if family == "SCRAM" and mechanism and not mechanism.startswith("SCRAM-"):
            raise _error(f"{source}: sasl.jaas.config is a SCRAM login module but "
                         f"sasl.mechanism is {mechanism}")
    _pem_store(props, "ssl.truststore", "ssl_cafile", security, source)
    _pem_store(props, "ssl.keystore", "ssl_certfile", security, source)
    if "ssl.keystore.password" in props and "ssl_password" not in security:
        security["ssl_password"] = props["ssl.keystore.password"]
    algorithm = props.get("ssl.endpoint.identification.algorithm")
    if algorithm is not None:
        # Java: "" turns hostname verification off; librdkafka: "none".
        security["ssl_check_hostname"] = algorithm.strip().lower() not in ("", "none")
    return ClientProperties(props.get("bootstrap.servers") or None, security)


def _pem_store(props: dict[str, str], prefix: str, field_name: str,
               security: dict[str, object], source: str) -> None:
    location = props.get(f"{prefix}.location")
    if not location:
        return
    store_type = props.get(f"{prefix}.type", "JKS").strip().upper()
    if store_type != "PEM":
        raise _error(f"{source}: {prefix}.location is a {store_type} store; {_PEM_ONLY}")
    security.setdefault(field_name, location)


def load_properties(path: str) -> ClientProperties:
    """Read and map a properties file; ``ConfigError`` names the file on any problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise _error(f"--kafka-config {path}: {exc.strerror or 'cannot be read'}") from None
    except UnicodeDecodeError:
        raise _error(f"--kafka-config {path}: not UTF-8 text") from None
    return security_from_properties(parse_properties(text), source=path)


def _error(message: str) -> Exception:
    from streamrec.config import ConfigError  # late: config imports this module's users
    return ConfigError(message)
