"""Keep secrets out of logs and error messages: node API keys, database passwords, webhook tokens.

Operators paste URLs that carry credentials: ``wss://mainnet.infura.io/ws/v3/KEY``,
``https://eth.example.com/?apikey=KEY``, ``clickhouse://user:PASSWORD@host/db``,
``https://hooks.slack.com/services/T000/B000/TOKEN``. Those URLs end up in exception messages (a
connection refused names the URL), in log lines, in tracebacks.

Rules first, guesses only as a second net:

- A webhook URL is a secret beyond its host, whatever its shape (Slack, Discord, Telegram's
  ``bot<id>:<token>``, a generic hook): :func:`mask_webhook` keeps ``scheme://host`` and masks the whole path
  and query. The commands :func:`register` the secret parts of every webhook and password they are given, and
  :func:`redact` masks those exact strings wherever they appear, in any form of text.
- In every URL: the password of the user info, and query values whose names mean a secret.
- In any text: ``password=...``-style pairs.
- The guess: path segments and bare user infos that look like keys (long, letters and digits mixed), for node
  URLs such as Infura's, whose key sits in the path. Hashes and addresses (``0x...``) are public and kept.

:func:`install` makes every log record of the process pass through :func:`redact`. It hooks the log
record factory rather than adding a filter to handlers, because the Faust worker (through mode) sets up
its own handlers after the CLI starts; a record factory applies to every logger and every handler,
including ones created later. It also makes uncaught exceptions print redacted tracebacks.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import traceback
from types import TracebackType
from typing import Any

MASK = "***"
_URL = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.\-]*://)([^\s'\"<>`\\]+)")
_SECRET_NAME = re.compile(
    r"^(?:api[-_]?key|apikey|key|token|access[-_]?token|auth[-_]?token|auth|secret|client[-_]?secret|"
    r"password|passwd|pwd|pass|signature|sig|credential|credentials|x-api-key|private[-_]?key)$",
    re.IGNORECASE,
)
_PAIR = re.compile(
    r"\b(password|passwd|pwd|secret|api[-_]?key|apikey|access[-_]?token|auth[-_]?token|client[-_]?secret)"
    r"(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&'\"]+)",
    re.IGNORECASE,
)
_KEYLIKE = re.compile(r"^[A-Za-z0-9_\-]{16,}$")


_registered: set[str] = set()
_registered_order: list[str] = []
"""Registered secrets, longest first (so a secret that contains another is masked whole)."""
MIN_REGISTERED = 4
"""Shorter strings are not registered: masking every ``/v2`` or ``abc`` in the logs would hide the logs."""
SECRET_SETTING = re.compile(r"(?:^|_)(?:password|passwd|secret|token|routing_key|api_key)$")
"""Settings whose whole value is a secret (``sasl_password``, ``pagerduty_routing_key``)."""


def register(secret: str | None) -> None:
    """Mask ``secret`` wherever :func:`redact` meets it from now on (a password, a webhook's path)."""
    if secret and len(secret) >= MIN_REGISTERED and secret not in _registered:
        _registered.add(secret)
        _registered_order[:] = sorted(_registered, key=len, reverse=True)


def forget_registered() -> None:
    """Drop every registered secret (for tests)."""
    _registered.clear()
    _registered_order.clear()


def _split_url(url: str) -> tuple[str, str] | None:
    """``(scheme://authority, rest)`` of a URL, or None when ``url`` is not one."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme or not rest:
        return None
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    return f"{scheme}://{rest[:cut]}", rest[cut:]


def mask_webhook(url: str) -> str:
    """``scheme://host/***``: a webhook's path and query are its credential, whatever the service."""
    parts = _split_url(url.strip())
    if parts is None:
        return MASK
    origin, rest = parts
    return redact(origin) + ("/" + MASK if rest.strip("/?#") else "")


def register_webhook(url: str | None) -> None:
    """Register the secret parts of a webhook URL: its path and query, and its user info's password."""
    if not url:
        return
    parts = _split_url(url.strip())
    if parts is None:
        register(url)
        return
    origin, rest = parts
    register(rest.lstrip("/") if rest.strip("/?#") else None)
    register(rest.partition("?")[2] or None)  # a message may quote the query alone
    if "@" in origin:
        userinfo = origin.split("://", 1)[1].rsplit("@", 1)[0]
        register(userinfo.split(":", 1)[1] if ":" in userinfo else userinfo)


def register_setting(name: str, value: object) -> None:
    """Register what is secret in one setting's value, by the setting's kind: a webhook's path and query, a
    password-like setting whole, and the user info's password of any URL."""
    if isinstance(value, list | tuple):
        for item in value:
            register_setting(name, item)
        return
    if not isinstance(value, str) or not value:
        return
    name = name.lower().replace("-", "_")
    if "webhook" in name:
        register_webhook(value)
    elif SECRET_SETTING.search(name):
        register(value)
    elif "://" in value:
        parts = _split_url(value.strip())
        if parts is not None and "@" in parts[0]:
            userinfo = parts[0].split("://", 1)[1].rsplit("@", 1)[0]
            if ":" in userinfo:
                register(userinfo.split(":", 1)[1])


def register_command_line(argv: list[str], environ: dict[str, str], prefix: str = "HALTWATCH_") -> None:
    """Register the secrets among a command's options (``--name value``, ``--name=value``) and its
    ``HALTWATCH_*`` environment, before anything could print them."""
    for key, value in environ.items():
        if key.startswith(prefix):
            register_setting(key[len(prefix):], value)
    for i, arg in enumerate(argv):
        if not arg.startswith("--"):
            continue
        name, eq, value = arg[2:].partition("=")
        if not eq and i + 1 < len(argv):
            value = argv[i + 1]
        register_setting(name, value)


def mask_setting(name: str, value: str) -> str:
    """A setting's value as ``haltwatch config`` shows it: by the setting's kind first, then :func:`redact`."""
    if not value:
        return value
    if "webhook" in name:
        return mask_webhook(value)
    if SECRET_SETTING.search(name):
        return MASK
    return redact(value)


def looks_like_key(segment: str) -> bool:
    """A path segment or user name that is probably a credential (long, mixes letters and digits).

    ``0x``-prefixed hex (addresses, hashes) is public; words like ``mainnet`` or ``haltwatch`` are kept.
    """
    if segment.lower().startswith("0x") or not _KEYLIKE.match(segment):
        return False
    has_digit = any(ch.isdigit() for ch in segment)
    has_alpha = any(ch.isalpha() for ch in segment)
    mixed_case = segment != segment.lower() and segment != segment.upper()
    return (has_digit and has_alpha) or len(segment) >= 32 or (mixed_case and len(segment) >= 20)


def _redact_query(query: str) -> str:
    parts = []
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        if eq and value and (_SECRET_NAME.match(name) or looks_like_key(value)):
            parts.append(f"{name}={MASK}")
        else:
            parts.append(part)
    return "&".join(parts)


def _redact_url(match: re.Match[str]) -> str:
    scheme, rest = match.group(1), match.group(2)
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    if "@" in authority:
        userinfo, host = authority.rsplit("@", 1)
        if ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            userinfo = f"{user}:{MASK}"
        elif looks_like_key(userinfo):
            userinfo = MASK
        authority = f"{userinfo}@{host}"
    path, qmark, query = tail.partition("?")
    query, hashmark, fragment = query.partition("#")
    path = "/".join(MASK if looks_like_key(seg) else seg for seg in path.split("/"))
    if qmark:
        query = _redact_query(query)
    return f"{scheme}{authority}{path}{qmark}{query}{hashmark}{fragment}"


def redact(text: str) -> str:
    """``text`` with registered secrets, the credentials of every URL in it, and ``password=...`` pairs
    masked."""
    if not text:
        return text
    for secret in _registered_order:
        if secret in text:
            text = text.replace(secret, MASK)
    if "://" in text:
        text = _URL.sub(_redact_url, text)
    return _PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)


def redact_record(record: logging.LogRecord) -> None:
    """Replace a record's message (and formatted exception) by their redacted forms when they differ."""
    try:
        message = record.getMessage()
    except Exception:
        return  # a bad format string: logging reports it itself
    clean = redact(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        text = logging.Formatter().formatException(record.exc_info)
        clean_text = redact(text)
        if clean_text != text:
            record.exc_text = clean_text
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


class RedactingFilter(logging.Filter):
    """A filter for handlers of other programs' logging setups; :func:`install` covers this process."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


_installed = threading.Lock()
_state: dict[str, Any] = {}


def _excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    sys.stderr.write(redact("".join(traceback.format_exception(kind, value, tb))))


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    text = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
    sys.stderr.write(redact(f"Exception in thread {name}:\n{text}"))


def install() -> None:
    """Redact every log record and uncaught exception of this process from now on (idempotent)."""
    with _installed:
        if _state:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            redact_record(record)
            return record

        _state["factory"] = previous
        _state["excepthook"] = sys.excepthook
        _state["thread_excepthook"] = threading.excepthook
        logging.setLogRecordFactory(factory)
        sys.excepthook = _excepthook
        threading.excepthook = _thread_excepthook


def uninstall() -> None:
    """Undo :func:`install` (for tests)."""
    with _installed:
        if not _state:
            return
        logging.setLogRecordFactory(_state.pop("factory"))
        sys.excepthook = _state.pop("excepthook")
        threading.excepthook = _state.pop("thread_excepthook")
