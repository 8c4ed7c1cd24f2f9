"""How haltwatch's processes log: text for people, or one JSON object per line for log pipelines.

``--log-format json`` (``HALTWATCH_LOG_FORMAT``) gives every record as ``{"time", "level", "logger",
"message"}`` (plus ``exc_info`` when there is one), through python-json-logger, a small, well-kept formatter
that the standard library's ``logging`` takes as is. The Faust worker configures logging itself at start;
:func:`worker_logging_config` hands it the same formatter as a ``dictConfig``. Secrets are masked either way
(``access/secrets.py`` rewrites every record before any formatter sees it).
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from access.kafka_security import quiet_client_libraries

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = {"asctime": "time", "levelname": "level", "name": "logger"}


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


def json_formatter() -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", rename_fields=JSON_FIELDS)


def configure_logging(verbose: bool, log_format: LogFormat = LogFormat.TEXT) -> None:
    """The root logger of a connector or a one-shot command; the client libraries kept quiet unless verbose."""
    handler = logging.StreamHandler()
    handler.setFormatter(json_formatter() if log_format is LogFormat.JSON else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    if not verbose:
        quiet_client_libraries()


def worker_logging_config(verbose: bool, log_format: LogFormat) -> dict[str, Any] | None:
    """The ``logging_config`` the Faust worker applies at start (None: Faust's own text format)."""
    if log_format is LogFormat.TEXT:
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": json_formatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"level": "DEBUG" if verbose else "INFO", "handlers": ["stderr"]},
    }
