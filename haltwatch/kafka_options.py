"""The Kafka security options, the same seven on every command that talks to Kafka.

:func:`with_kafka_security` adds them to a command's signature (so Typer shows and parses them, from the
command line, ``HALTWATCH_KAFKA_*`` or the config file) and hands the command one checked
:class:`~access.kafka_security.KafkaSecurity` as ``kafka_security`` instead. Why a decorator: seven
parameters repeated on four commands would be 28 places to keep alike.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from access.kafka_security import MECHANISMS, PROTOCOLS, KafkaSecurity, refused_access
from access.secrets import redact

F = TypeVar("F", bound=Callable[..., Any])


def _choice(allowed: tuple[str, ...], flag: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        upper = str(value).strip().upper().replace("_", "-") if flag == "mechanism" else str(value).strip().upper()
        if upper not in allowed:
            raise typer.BadParameter(f"expected one of {', '.join(allowed)}, got {value!r}")
        return upper

    return parse


OPTIONS: dict[str, tuple[Any, Any]] = {
    "kafka_security_protocol": (Annotated[str, typer.Option(
        envvar="HALTWATCH_KAFKA_SECURITY_PROTOCOL", parser=_choice(PROTOCOLS, "protocol"),
        help="Kafka transport: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.")], "PLAINTEXT"),
    "kafka_sasl_mechanism": (Annotated[str | None, typer.Option(
        envvar="HALTWATCH_KAFKA_SASL_MECHANISM", parser=_choice(MECHANISMS, "mechanism"),
        help="SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.")], None),
    "kafka_sasl_username": (Annotated[str | None, typer.Option(
        envvar="HALTWATCH_KAFKA_SASL_USERNAME", help="SASL user.")], None),
    "kafka_sasl_password": (Annotated[str | None, typer.Option(
        envvar="HALTWATCH_KAFKA_SASL_PASSWORD", help="SASL password (masked in logs and `haltwatch config`).")],
        None),
    "kafka_ssl_cafile": (Annotated[Path | None, typer.Option(
        envvar="HALTWATCH_KAFKA_SSL_CAFILE", dir_okay=False,
        help="PEM file of the CA(s) that signed the brokers' certificates (default: the system's).")], None),
    "kafka_ssl_certfile": (Annotated[Path | None, typer.Option(
        envvar="HALTWATCH_KAFKA_SSL_CERTFILE", dir_okay=False, help="Client certificate (PEM), for mTLS.")], None),
    "kafka_ssl_keyfile": (Annotated[Path | None, typer.Option(
        envvar="HALTWATCH_KAFKA_SSL_KEYFILE", dir_okay=False, help="Client certificate's private key (PEM).")],
        None),
}


def security_from(values: dict[str, Any]) -> KafkaSecurity:
    """The checked security of the options' values; a contradiction is a usage error naming the flags."""
    try:
        return KafkaSecurity(
            protocol=values["kafka_security_protocol"], mechanism=values["kafka_sasl_mechanism"],
            username=values["kafka_sasl_username"], password=values["kafka_sasl_password"],
            ca_file=values["kafka_ssl_cafile"], cert_file=values["kafka_ssl_certfile"],
            key_file=values["kafka_ssl_keyfile"],
        )
    except ValueError as exc:
        raise typer.BadParameter(redact(str(exc))) from None


def check_access(kafka: str, security: KafkaSecurity) -> None:
    """Stop with one line (exit 2) when the cluster refuses these credentials or this TLS handshake; a
    cluster that is only unreachable is left to the command's own retries."""
    if security.protocol == "PLAINTEXT":
        return
    refusal = refused_access(kafka, security)
    if refusal is not None:
        typer.echo(f"error: {redact(refusal)}", err=True)
        raise typer.Exit(2)


def with_kafka_security(command: F) -> F:
    """Add the Kafka security options to ``command``; it receives ``kafka_security: KafkaSecurity``."""
    signature = inspect.signature(command)
    hints = typing.get_type_hints(command, include_extras=True)  # resolved: the command's module knows them
    kept = [p.replace(annotation=hints.get(p.name, p.annotation))
            for p in signature.parameters.values() if p.name != "kafka_security"]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
             for name, (annotation, default) in OPTIONS.items()]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name, default) for name, (_annotation, default) in OPTIONS.items()}
        return command(*args, kafka_security=security_from(values), **kwargs)

    wrapper.__signature__ = signature.replace(parameters=kept + added)  # type: ignore[attr-defined]
    hints.pop("kafka_security", None)
    hints.update({name: annotation for name, (annotation, _default) in OPTIONS.items()})
    wrapper.__annotations__ = hints
    del wrapper.__wrapped__  # Typer must read the new signature, not the command's
    return wrapper  # type: ignore[return-value]
