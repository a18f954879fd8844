"""What makes the local broker a secured one: TLS files, SCRAM users and the authorizer.

``KafkaLauncher(secure=True)`` adds a ``SASL_SSL`` listener next to the plaintext one. The
plaintext and controller listeners stay on the loopback address for the launcher's probe and
the broker itself; their principal ``User:ANONYMOUS`` is a super user, so treat them as the
operator's back door, never hand them to a service. On ``SASL_SSL`` every client
authenticates with SCRAM and ``StandardAuthorizer`` denies whatever no ACL allows.

Certificates come from the JDK's ``keytool`` at every start (a throw-away CA, a broker
certificate for ``localhost``/``127.0.0.1`` signed by it), and the users get fresh random
passwords at every storage format; both live only in the broker's temp data dir.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from streamrec.transport.acls import ADMIN, SERVICE_PRINCIPALS
from streamrec.config import Settings
from streamrec.connection import KafkaSecurity

# ``nobody`` authenticates fine but has no ACL at all: tests prove the authorizer denies it.
PRINCIPALS = (ADMIN, *SERVICE_PRINCIPALS, "nobody")
SCRAM_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")
SECURE_LISTENER = "SASL_SSL"
_DAYS_VALID = "2"  # regenerated per start: no certificate outlives a dev session by much


class TlsSetupError(RuntimeError):
    """keytool failed; the message carries its output (which holds no secret)."""


@dataclass(frozen=True)
class TlsFiles:
    keystore: Path    # PKCS12: the broker's key and certificate chain
    truststore: Path  # PKCS12: the CA, for clients (and mTLS, if ever turned on)
    ca_pem: Path      # the CA as PEM, what Python clients pass as ``ssl_cafile``
    store_password: str = field(repr=False)


@dataclass(frozen=True)
class SecureBroker:
    """How to reach a secured broker: its ``SASL_SSL`` address, CA and one user per principal.

    ``passwords`` never shows in ``repr``; ``settings_for`` gives a principal's ``Settings``
    (what ``streamrec.transport.kafka_clients`` builds clients from).
    """

    bootstrap: str
    ca_file: str
    passwords: Mapping[str, str] = field(repr=False)
    mechanism: str = "SCRAM-SHA-512"
    plaintext_bootstrap: str = ""  # the super-user back door on loopback (see module doc)
    data_dir: str = ""  # the launcher's broker: its logs, TLS files and client configs

    @property
    def admin_password(self) -> str:
        return self.passwords[ADMIN]

    def security_for(self, principal: str, password: str | None = None,
                     mechanism: str | None = None) -> KafkaSecurity:
        """The connection config authenticating as ``principal`` over SASL_SSL (a wrong
        ``password`` or another SCRAM ``mechanism`` may be given, for tests)."""
        return KafkaSecurity("SASL_SSL", mechanism or self.mechanism, principal,
                             password if password is not None else self.passwords[principal],
                             ssl_cafile=self.ca_file)

    def settings_for(self, principal: str, base: Settings | None = None, *,
                     password: str | None = None, mechanism: str | None = None) -> Settings:
        """``base`` (topic prefix, groups...) pointed at this broker as ``principal``: what
        ``streamrec.transport.kafka_clients`` builds that principal's clients from."""
        return (base or Settings()).replace(
            bootstrap_servers=self.bootstrap,
            kafka_security=self.security_for(principal, password, mechanism))

    def client_kwargs(self, principal: str, password: str | None = None,
                      mechanism: str | None = None) -> dict[str, object]:
        """kafka-python keyword arguments authenticating as ``principal`` over SASL_SSL."""
        return {"bootstrap_servers": self.bootstrap,
                **self.security_for(principal, password, mechanism).client_kwargs()}


def random_passwords(principals: tuple[str, ...] = PRINCIPALS) -> dict[str, str]:
    # URL-safe characters only: no quote, comma or bracket can break StorageTool's parser.
    return {name: secrets.token_urlsafe(18) for name in principals}


def add_scram_arguments(passwords: Mapping[str, str]) -> list[str]:
    """StorageTool ``--add-scram`` arguments: every user under both SCRAM mechanisms."""
    args = []
    for mechanism in SCRAM_MECHANISMS:
        for name, password in passwords.items():
            args += ["--add-scram", f"{mechanism}=[name={name},password={password}]"]
    return args


def _keytool(*args: str, stdin: bytes | None = None) -> bytes:
    done = subprocess.run(["keytool", "-J-XX:TieredStopAtLevel=1", *args], input=stdin,
                          capture_output=True)
    if done.returncode != 0:
        raise TlsSetupError(f"keytool {args[0]} failed: {done.stdout.decode(errors='replace')}"
                            f"{done.stderr.decode(errors='replace')}")
    return done.stdout


def tls_files(folder: Path, store_password: str | None = None) -> TlsFiles:
    """Where ``make_tls_files`` puts its files: known before they exist, so the broker's
    config can be written (and storage formatted) while keytool still runs."""
    return TlsFiles(folder / "broker.p12", folder / "truststore.p12", folder / "ca.pem",
                    store_password or secrets.token_urlsafe(18))


def make_tls_files(files: TlsFiles, host: str = "127.0.0.1") -> TlsFiles:
    """A fresh CA and a broker certificate it signs, valid for ``localhost`` and ``host``.

    EC keys (fast to make); the two key pairs are generated in parallel, as each keytool
    call is a JVM start. Measured about 2 s on two busy cores.
    """
    folder = files.keystore.parent
    folder.mkdir(parents=True, exist_ok=True)
    password = files.store_password
    ca_store, keystore = folder / "ca.p12", files.keystore
    truststore, ca_pem = files.truststore, files.ca_pem
    common = ["-storetype", "PKCS12", "-storepass", password, "-keypass", password]
    key = ["-keyalg", "EC", "-groupname", "secp256r1", "-validity", _DAYS_VALID]
    with ThreadPoolExecutor(2) as pool:
        ca = pool.submit(_keytool, "-genkeypair", "-alias", "ca", "-dname",
                         "CN=streamrec local CA", "-ext", "bc:c", *key, "-keystore",
                         str(ca_store), *common)
        broker = pool.submit(_keytool, "-genkeypair", "-alias", "broker", "-dname",
                             "CN=localhost", *key, "-keystore", str(keystore), *common)
        ca.result(), broker.result()
    ca_pem.write_bytes(_keytool("-exportcert", "-rfc", "-alias", "ca", "-keystore",
                                str(ca_store), "-storepass", password))
    request = _keytool("-certreq", "-alias", "broker", "-keystore", str(keystore), *common)
    san = f"SAN=dns:localhost,ip:{host}" + (",ip:127.0.0.1" if host != "127.0.0.1" else "")
    signed = _keytool("-gencert", "-alias", "ca", "-keystore", str(ca_store), "-rfc",
                      "-ext", san, "-ext", "eku=serverAuth", "-validity", _DAYS_VALID,
                      *common, stdin=request)
    # The chain goes in whole (broker + CA), so clients can build it from the CA alone.
    (folder / "broker-chain.pem").write_bytes(signed + ca_pem.read_bytes())
    with ThreadPoolExecutor(2) as pool:
        chain = pool.submit(_keytool, "-importcert", "-noprompt", "-alias", "broker",
                            "-file", str(folder / "broker-chain.pem"), "-keystore",
                            str(keystore), *common)
        trust = pool.submit(_keytool, "-importcert", "-noprompt", "-alias", "ca", "-file",
                            str(ca_pem), "-keystore", str(truststore), *common)
        chain.result(), trust.result()
    ca_store.unlink()  # the CA's key signed one certificate; nothing else may use it
    return files


def secure_properties(tls: TlsFiles) -> dict[str, str]:
    """Broker settings for the ``SASL_SSL`` listener, SCRAM and the KRaft authorizer."""
    listener = f"listener.name.{SECURE_LISTENER.lower()}"
    props = {
        "sasl.enabled.mechanisms": ",".join(SCRAM_MECHANISMS),
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(tls.keystore),
        "ssl.keystore.password": tls.store_password,
        "ssl.key.password": tls.store_password,
        "ssl.truststore.type": "PKCS12",
        "ssl.truststore.location": str(tls.truststore),
        "ssl.truststore.password": tls.store_password,
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        # ANONYMOUS: the loopback controller and plaintext listeners (the broker itself).
        "super.users": f"User:{ADMIN};User:ANONYMOUS",
        "allow.everyone.if.no.acl.found": "false",
    }
    for mechanism in SCRAM_MECHANISMS:
        props[f"{listener}.{mechanism.lower()}.sasl.jaas.config"] = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;")
    return props


def redact(text: str, secrets_: Mapping[str, str] | list[str]) -> str:
    """``text`` with every given secret replaced, for error messages that quote tool output."""
    values = secrets_.values() if isinstance(secrets_, Mapping) else secrets_
    for value in values:
        if value:
            text = text.replace(value, "***")
    return text


def client_properties(broker: SecureBroker, principal: str) -> str:
    """A Kafka ``client.properties`` (what ``kafka-acls.sh --command-config`` and
    ``--kafka-config`` read) authenticating as ``principal``; it holds the password."""
    jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required '
            f'username="{principal}" password="{broker.passwords[principal]}";')
    return (f"security.protocol=SASL_SSL\nsasl.mechanism={broker.mechanism}\n"
            f"sasl.jaas.config={jaas}\nssl.truststore.type=PEM\n"
            f"ssl.truststore.location={broker.ca_file}\n")


def write_client_properties(broker: SecureBroker, folder: Path) -> dict[str, Path]:
    """One ``<principal>.properties`` per user, readable by the owner only."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    written = {}
    for principal in broker.passwords:
        path = folder / f"{principal}.properties"
        # Created 0600 before the password is written: never readable by others, not even
        # for a moment.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(client_properties(broker, principal))
        written[principal] = path
    return written
