"""Value types of the commands' settings, checked before anything connects.

Each is a Typer ``parser``: Typer converts and checks a value with it the same way wherever the value comes
from (the command line, the ``HALTWATCH_*`` environment), and :mod:`haltwatch.config` runs the very same
converters on the config file and on what ``haltwatch config`` shows, so one type here is one rule everywhere.
A failure is a ``typer.BadParameter`` whose message says what is wrong and what is expected; Typer adds the
flag's (and the environment variable's) name, and the exit is 2.

Why parsers rather than checks inside each command: a check in the command body runs after the option has
already accepted ``nan`` as a float, and only for that command; a setting such as the Kafka address is shared
by six commands.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlsplit

import typer

from access.secrets import redact


class FiniteNumber:
    """A finite number above ``above`` (``nan`` and ``inf`` are floats to Python, not budgets to a risk desk)."""

    def __init__(self, above: float = 0.0) -> None:
        self.above = above

    def __call__(self, value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise typer.BadParameter(f"expected a number above {self.above:g}, got {value!r}") from None
        if not math.isfinite(number) or number <= self.above:
            raise typer.BadParameter(f"expected a finite number above {self.above:g}, got {value!r}")
        return number


class HostPorts:
    """``host:port``, or several separated by commas (Kafka's bootstrap servers)."""

    def __call__(self, value: Any) -> str:
        text = str(value).strip()
        servers = [s.strip() for s in text.split(",")]
        for server in servers:
            host, colon, port = server.rpartition(":")
            if not colon or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise typer.BadParameter(f"expected host:port (port 1-65535), comma-separated for several; "
                                         f"got {server!r}")
        return ",".join(servers)


class UrlOf:
    """A URL with one of ``schemes`` and a host; with ``several``, a comma-separated list of them."""

    def __init__(self, *schemes: str, several: bool = False) -> None:
        self.schemes = schemes
        self.several = several

    def __call__(self, value: Any) -> str:
        text = str(value).strip()
        for url in text.split(",") if self.several else [text]:
            parts = urlsplit(url.strip())
            if parts.scheme not in self.schemes or not parts.hostname:
                expected = " or ".join(f"{s}://" for s in self.schemes)
                raise typer.BadParameter(f"expected a URL starting with {expected} and naming a host, got "
                                         f"{redact(url.strip())!r}")
            try:
                parts.port  # noqa: B018 - raises on a port that is not a number in range
            except ValueError:
                raise typer.BadParameter(
                    f"the port of {redact(url.strip())!r} is not a number from 1 to 65535") from None
        return text
