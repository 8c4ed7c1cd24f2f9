"""How every haltwatch Kafka client authenticates: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, one way.

Managed Kafka services and production clusters take SASL (PLAIN or SCRAM-SHA-256/512) over TLS. The same
:class:`KafkaSecurity` feeds the connectors' kafka-python producers and admin clients
(:meth:`KafkaSecurity.client_options`), the worker's Faust/aiokafka app (:meth:`KafkaSecurity.faust_credentials`)
and ``haltwatch follow``, so a deployment states its credentials once (flags, ``HALTWATCH_KAFKA_*`` or the
config file).

A wrong password or an untrusted certificate is not a reason to retry: :func:`refused_access` tells such a
refusal apart from a broker that is merely not up yet, so a command can stop with one line instead of
retrying for ever. Why a probe of our own: kafka-python reports either as "Unable to bootstrap" after its
timeout, with the cause only in its log.
"""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
PROBE_TIMEOUT_MS = 10_000


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """Transport security and credentials of a Kafka connection."""

    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    """PEM file of the CAs to trust (default: the system's)."""
    cert_file: Path | None = None
    """Client certificate (PEM), for clusters that authenticate clients by TLS."""
    key_file: Path | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"--kafka-security-protocol: expected one of {', '.join(PROTOCOLS)}, got "
                             f"{self.protocol!r}")
        sasl = self.protocol.startswith("SASL_")
        if sasl:
            if self.mechanism not in MECHANISMS:
                raise ValueError(f"--kafka-sasl-mechanism: {self.protocol} needs one of {', '.join(MECHANISMS)}, "
                                 f"got {self.mechanism!r}")
            if not self.username or self.password is None:
                raise ValueError(f"{self.protocol} needs both --kafka-sasl-username and --kafka-sasl-password")
        elif self.mechanism or self.username or self.password:
            raise ValueError(f"--kafka-sasl-*: given, but --kafka-security-protocol is {self.protocol}; use "
                             "SASL_SSL (or SASL_PLAINTEXT) for SASL")
        if not self.tls and (self.ca_file or self.cert_file or self.key_file):
            raise ValueError(f"--kafka-ssl-*: given, but --kafka-security-protocol is {self.protocol}; use SSL or "
                             "SASL_SSL for TLS")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("--kafka-ssl-certfile and --kafka-ssl-keyfile: give both or neither")
        for flag, path in (("--kafka-ssl-cafile", self.ca_file), ("--kafka-ssl-certfile", self.cert_file),
                           ("--kafka-ssl-keyfile", self.key_file)):
            if path is not None and not path.is_file():
                raise ValueError(f"{flag}: {path} is not a readable file")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def describe(self) -> str:
        """For log lines: what, never the password."""
        if self.protocol.startswith("SASL_"):
            return f"{self.protocol} {self.mechanism} as {self.username}"
        return self.protocol

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file is not None and self.key_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's producer, consumer and admin client."""
        if self.protocol == "PLAINTEXT":
            return {}
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.protocol.startswith("SASL_"):
            options.update(sasl_mechanism=self.mechanism, sasl_plain_username=self.username,
                           sasl_plain_password=self.password)
        if self.tls:
            options["ssl_context"] = self.ssl_context()
        return options

    def faust_credentials(self) -> Any:
        """Faust's ``broker_credentials`` (aiokafka underneath), or None for PLAINTEXT."""
        from faust.auth import SASLCredentials, SSLCredentials

        if self.protocol == "PLAINTEXT":
            return None
        if self.protocol == "SSL":
            return SSLCredentials(self.ssl_context())
        # SASL_SSL exactly when a TLS context is given (Faust's rule)
        return SASLCredentials(username=self.username, password=self.password, mechanism=self.mechanism,
                               ssl_context=self.ssl_context())


CLIENT_LIBRARIES = ("kafka", "aiokafka", "clickhouse_driver")
"""Their per-attempt connection chatter (tens of lines a minute while a server is down) is shown with
``--verbose`` only: haltwatch logs one line of its own per retry, saying what, where and when next."""
CLIENT_LOG_LEVEL_ENV = "HALTWATCH_CLIENT_LOG_LEVEL"
"""Another level for the client libraries alone (``INFO`` shows each connection lost and made), for an
operator chasing a connection problem without debug logging everywhere; default ``CRITICAL``."""


def quiet_client_libraries() -> None:
    """Set the client libraries' loggers to ``HALTWATCH_CLIENT_LOG_LEVEL``, CRITICAL unless said (the CLI
    does it unless ``--verbose``)."""
    wanted = os.environ.get(CLIENT_LOG_LEVEL_ENV, "CRITICAL").strip().upper()
    level = logging.getLevelName(wanted)
    if not isinstance(level, int):
        logging.getLogger(__name__).warning("%s=%r is not a log level (DEBUG, INFO, WARNING, ERROR or CRITICAL); "
                                            "using CRITICAL", CLIENT_LOG_LEVEL_ENV, wanted)
        level = logging.CRITICAL
    for name in CLIENT_LIBRARIES:
        logging.getLogger(name).setLevel(level)


PLAINTEXT = KafkaSecurity()
"""No TLS, no SASL: a local or trusted-network cluster (and the default everywhere)."""


class _Refusals(logging.Handler):
    """Keeps what kafka-python's network layer says while connecting: its errors, and whether a connection
    was lost right after the SASL exchange (a broker drops a client whose SCRAM proof is wrong, and the
    client sees only a lost socket)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen: list[BaseException | str] = []
        self.authenticating = False
        self.lost_while_authenticating = False

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "SaslHandshakeRequest" in message or "SaslAuthenticateRequest" in message:
            self.authenticating = True
        elif "SaslAuthenticateResponse" in message:
            self.authenticating = False
        if record.levelno >= logging.ERROR and "Connection lost" in message and self.authenticating:
            self.lost_while_authenticating = True
        if record.exc_info and record.exc_info[1] is not None:
            self.seen.append(record.exc_info[1])
        elif record.levelno >= logging.ERROR:
            self.seen.append(message)


def refused_access(bootstrap: str, security: KafkaSecurity, timeout_ms: int = PROBE_TIMEOUT_MS) -> str | None:
    """Why the cluster refuses these credentials or this TLS handshake, in one line; None when it accepts
    them, or when it cannot be reached at all (the caller's retries handle a broker that is not up yet)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    refusals = _Refusals()
    network = logging.getLogger("kafka")  # heard at DEBUG by our handler only, for the probe's few seconds
    saved = network.level, network.propagate
    network.addHandler(refusals)
    network.setLevel(logging.DEBUG)
    network.propagate = False
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="haltwatch-access-check",
                                 bootstrap_timeout_ms=timeout_ms, **security.client_options())
        admin.close()
        return None
    except KafkaError:
        pass
    finally:
        network.removeHandler(refusals)
        network.setLevel(saved[0])
        network.propagate = saved[1]
    if refusals.lost_while_authenticating:
        return (f"Kafka at {bootstrap} refused {security.describe()}: it closed the connection during SASL "
                "authentication (wrong user, password or mechanism?)")
    for seen in reversed(refusals.seen):
        text = str(seen)
        if "SaslAuthenticationFailed" in type(seen).__name__ or "Authentication failed" in text:
            return (f"Kafka at {bootstrap} refused {security.describe()}: authentication failed (wrong user, "
                    "password or mechanism?)")
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
            reason = getattr(seen, "verify_message", None) or text
            return (f"Kafka at {bootstrap}: its TLS certificate is not trusted ({reason}); give the CA that "
                    "signed it with --kafka-ssl-cafile")
        if isinstance(seen, ssl.SSLError) or "WRONG_VERSION_NUMBER" in text:
            return f"Kafka at {bootstrap}: the TLS handshake failed ({text}); is this a TLS listener?"
    return None
