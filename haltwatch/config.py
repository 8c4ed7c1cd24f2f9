"""One TOML file for every ``haltwatch`` command, validated against the commands' own options.

Where a setting comes from, first match wins: the command line, then the environment variable named in
``--help`` (``HALTWATCH_...``), then the config file, then the built-in default. The file holds settings
shared by every command at the top level, and per-command sections named after the commands::

    kafka = "kafka-1:9092,kafka-2:9092"     # every command with a --kafka option
    prefix = "haltwatch"
    clickhouse_url = "clickhouse://haltwatch:secret@clickhouse:9000/haltwatch"

    [worker]
    web_port = 6066
    alert_webhook = "https://hooks.slack.com/services/T000/B000/XXXX"

    [connect]
    chain = "ethereum"
    ws_url = ["wss://node-a/ws", "wss://node-b/ws"]
    labels = ["labels/ethereum.toml"]     # relative paths are relative to this file

Keys are the options' names with ``_`` or ``-``. The whole file is checked when any command starts, with
the same converters the command line uses (so limits such as ``partitions >= 1`` hold for the file too):
an unknown key (with the nearest known one suggested), a wrong type or a value out of range stops the
program with a message naming the file, the section, the key and the reason. The schema is the commands'
options, so a new option is configurable from the file without touching this module.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer

from access.secrets import mask_setting, redact

NOT_CONFIGURABLE = frozenset({"help", "config", "install_completion", "show_completion"})


class ConfigError(ValueError):
    """The config file cannot be used; the message lists every problem found."""


def _options(command: Any) -> dict[str, Any]:
    return {p.name: p for p in command.params if p.name and p.name not in NOT_CONFIGURABLE}


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _relative_to(value: Any, base: Path) -> Any:
    if isinstance(value, Path):
        return value if value.is_absolute() else base / value
    if isinstance(value, list | tuple) and value and all(isinstance(v, Path) for v in value):
        return [v if v.is_absolute() else base / v for v in value]
    return value


_TOML_TYPES: dict[Any, tuple[tuple[type, ...], str]] = {
    str: ((str,), "a string (in quotes)"),
    Path: ((str,), "a path string (in quotes)"),
    bool: ((bool,), "true or false"),
    int: ((int,), "an integer"),
    float: ((int, float), "a number"),
}


def _toml_type_error(param: Any, value: Any) -> str | None:
    """TOML values are typed: ``port = "80"`` or ``url = 5`` is a mistake the command line cannot make."""
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    item = getattr(annotation, "__args__", (annotation,))[0] if isinstance(value, list) else annotation
    expected = _TOML_TYPES.get(item)
    if expected is None:
        return None
    for v in value if isinstance(value, list) else [value]:
        if not isinstance(v, expected[0]) or (isinstance(v, bool) and bool not in expected[0]):
            return f"must be {expected[1]}"
    return None


def _check(ctx_factory: Any, command: Any, param: Any, value: Any, where: str, base: Path) -> tuple[Any, str | None]:
    """(converted value, None) or (None, the reason it is wrong)."""
    if (param.multiple or param.nargs == -1) and not isinstance(value, list):
        value = [value]
    wrong_type = _toml_type_error(param, value)
    if wrong_type:
        return None, f"{where} = {redact(repr(value))}: {wrong_type}"
    try:
        converted = param.process_value(ctx_factory(command), value)
    except Exception as exc:  # the command line's own converter: BadParameter or pydantic's error
        message = getattr(exc, "message", None) or str(exc)
        return None, f"{where} = {redact(repr(value))}: {redact(str(message))}"
    if isinstance(converted, tuple):
        converted = list(converted)
    return _relative_to(converted, base), None


def load_config(path: Path, group: Any) -> dict[str, dict[str, Any]]:
    """Validate ``path`` against the commands of ``group``; returns a click ``default_map``."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return validate(data, group, path)


def validate(data: Mapping[str, Any], group: Any, path: Path) -> dict[str, dict[str, Any]]:
    commands: dict[str, Any] = dict(group.commands)
    options = {name: _options(cmd) for name, cmd in commands.items()}
    shared_names = sorted({opt for opts in options.values() for opt in opts})
    base = path.parent.resolve()

    def ctx_factory(command: Any) -> Any:
        return typer.Context(command, info_name=command.name)

    errors: list[str] = []
    result: dict[str, dict[str, Any]] = {name: {} for name in commands}
    sections: dict[str, Mapping[str, Any]] = {}
    for raw_key, value in data.items():
        key = raw_key.replace("-", "_")
        if isinstance(value, dict) and raw_key in commands:
            sections[raw_key] = value
            continue
        if isinstance(value, dict):
            errors.append(f"[{raw_key}] is not a command{_suggest(raw_key, sorted(commands))}; sections are named "
                          f"after commands: {', '.join(sorted(commands))}")
            continue
        users = [name for name, opts in options.items() if key in opts]
        if not users:
            errors.append(f"{raw_key}: no command has this setting{_suggest(key, shared_names)}")
            continue
        for name in users:
            converted, error = _check(ctx_factory, commands[name], options[name][key], value, raw_key, base)
            if error:
                errors.append(f"{error} (for `haltwatch {name}`)")
                break
            result[name][key] = converted
    for section, values in sections.items():
        known = options[section]
        for raw_key, value in values.items():
            key = raw_key.replace("-", "_")
            where = f"[{section}] {raw_key}"
            if key not in known:
                errors.append(f"{where}: not a setting of `haltwatch {section}`{_suggest(key, sorted(known))}")
                continue
            converted, error = _check(ctx_factory, commands[section], known[key], value, where, base)
            if error:
                errors.append(error)
            else:
                result[section][key] = converted
    if errors:
        raise ConfigError(f"config file {path}:\n  " + "\n  ".join(errors))
    return {name: values for name, values in result.items() if values}


def effective(group: Any, default_map: Mapping[str, Mapping[str, Any]], environ: Mapping[str, str],
              command: str) -> list[dict[str, Any]]:
    """Each setting of ``command`` with the value that applies and where it comes from (secrets masked)."""
    cmd = group.commands[command]
    rows = []
    for name, param in _options(cmd).items():
        envvars = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or [])
        env = next((e for e in envvars if e in environ), None)
        problem = None
        if env is not None:
            value, source = environ[env], f"env {env}"
            problem = _env_problem(cmd, param, env, value)
        elif name in default_map.get(command, {}):
            value, source = default_map[command][name], "config file"
        else:
            value, source = param.default, "default"
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, list | tuple):
            value = [str(v) if isinstance(v, Path) else v for v in value]
        if isinstance(value, str):
            value = mask_setting(name, value)
        elif isinstance(value, list):
            value = [mask_setting(name, v) if isinstance(v, str) else v for v in value]
        rows.append({"command": command, "setting": name, "value": value, "source": source, "env": envvars,
                     "problem": problem})
    return rows


def _env_problem(command: Any, param: Any, env: str, value: str) -> str | None:
    """Why the command would refuse ``env``'s value (its own converter decides), or None."""
    ctx = typer.Context(command, info_name=command.name)
    try:
        param.process_value(ctx, param.value_from_envvar(ctx))  # split as the command splits it (lists)
    except Exception as exc:  # the command line's own converter: BadParameter or pydantic's error
        message = getattr(exc, "message", None) or str(exc)
        return f"{env}={redact(repr(value))}: {redact(str(message))}"
    return None
