"""One TOML file for every ``haltwatch`` command, validated against the commands' own options.

Where a setting comes from, first match wins: the command line, then the environment variable named in
``--help`` (``HALTWATCH_...``), then the config file, then the built-in default. The file holds settings
shared by every command at the top level, and per-command sections named after the commands::

    kafka = "kafka-1:9092,kafka-2:9092"     # every command with a --kafka option
    prefix = "haltwatch"
    clickhouse-url = "clickhouse://haltwatch:secret@clickhouse:9000/haltwatch"

    [worker]
    web-port = 6066
    alert-webhook = "https://hooks.slack.com/services/T000/B000/XXXX"

    [connect]
    chain = "ethereum"
    ws-url = ["wss://node-a/ws", "wss://node-b/ws"]
    labels = ["labels/ethereum.toml"]     # relative paths are relative to this file

    [backtest]
    input = "events.jsonl.gz"             # the flag is --input
    progress = false                      # --progress/--no-progress: true or false

Keys are the long flag names without the leading ``--``, exactly as typed on the command line (``ws-url``
for ``--ws-url``, ``input`` for ``--input``), so what ``--help`` shows is what the file takes. A Python
parameter name (``ws_url``, ``input_path``) is refused with the flag name suggested: accepting both would
make two spellings of one setting, one of them invisible in ``--help``. The whole file is checked when any
command starts, with the same converters the command line uses (so limits such as ``partitions >= 1`` hold
for the file too): an unknown key (with the nearest known one suggested), a wrong type or a value out of
range stops the program with a message naming the file, the section, the key and the reason. The schema is
the commands' options, so a new option is configurable from the file without touching this module.
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


def _keys(param: Any) -> list[str]:
    """The file keys of an option: its long flags without ``--`` (``--no-x`` of a boolean flag is not one)."""
    return [opt[2:] for opt in param.opts if opt.startswith("--")]


def _configurable(command: Any) -> list[Any]:
    """The options of ``command`` a file may set (arguments are not: they are what the command acts on)."""
    return [p for p in command.params if p.name and p.name not in NOT_CONFIGURABLE and _keys(p)]


def _options(command: Any) -> dict[str, Any]:
    """File key -> the option it sets."""
    return {key: p for p in _configurable(command) for key in _keys(p)}


def _suggest(key: str, known: Mapping[str, Any]) -> str:
    """The nearest key: the flag of an option named ``key`` in Python (``ws_url``), else the closest spelling."""
    for flag, param in known.items():
        if key.replace("-", "_") == getattr(param, "name", None):
            return f" (did you mean {flag}? keys are the flag names without --)"
    close = difflib.get_close_matches(key.replace("_", "-"), sorted(known), n=1, cutoff=0.6)
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


def _annotation_item(param: Any, value: Any) -> Any:
    """The type an option's value (or each item of a list value) is declared as."""
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    return getattr(annotation, "__args__", (annotation,))[0] if isinstance(value, list) else annotation


def _toml_type_error(param: Any, value: Any) -> str | None:
    """TOML values are typed: ``port = "80"`` or ``url = 5`` is a mistake the command line cannot make."""
    item = _annotation_item(param, value)
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
    joined = _annotation_item(param, value) is Path
    if joined:  # relative to the file before the converter checks that it exists
        value = _relative_to([Path(v) for v in value] if isinstance(value, list) else Path(value), base)
    try:
        converted = param.process_value(ctx_factory(command), value)
    except Exception as exc:  # the command line's own converter: BadParameter or pydantic's error
        message = getattr(exc, "message", None) or str(exc)
        return None, f"{where} = {redact(repr(value))}: {redact(str(message))}"
    if isinstance(converted, tuple):
        converted = list(converted)
    return (converted if joined else _relative_to(converted, base)), None


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
    """Check every key and value of ``data`` (the parsed file at ``path``); returns, per command, the
    converted values by the option's parameter name (what click's ``default_map`` is keyed by)."""
    commands: dict[str, Any] = dict(group.commands)
    options = {name: _options(cmd) for name, cmd in commands.items()}
    shared = {key: param for opts in options.values() for key, param in opts.items()}
    base = path.parent.resolve()

    def ctx_factory(command: Any) -> Any:
        return typer.Context(command, info_name=command.name)

    errors: list[str] = []
    result: dict[str, dict[str, Any]] = {name: {} for name in commands}
    sections: dict[str, Mapping[str, Any]] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key in commands:
            sections[key] = value
            continue
        if isinstance(value, dict):
            errors.append(f"[{key}] is not a command{_suggest(key, dict.fromkeys(sorted(commands)))}; sections "
                          f"are named after commands: {', '.join(sorted(commands))}")
            continue
        users = [name for name, opts in options.items() if key in opts]
        if not users:
            errors.append(f"{key}: no command has this setting{_suggest(key, shared)}")
            continue
        for name in users:
            param = options[name][key]
            converted, error = _check(ctx_factory, commands[name], param, value, key, base)
            if error:
                errors.append(f"{error} (for `haltwatch {name}`)")
                break
            result[name][param.name] = converted
    for section, values in sections.items():
        known = options[section]
        for key, value in values.items():
            where = f"[{section}] {key}"
            if key not in known:
                errors.append(f"{where}: not a setting of `haltwatch {section}`{_suggest(key, known)}")
                continue
            converted, error = _check(ctx_factory, commands[section], known[key], value, where, base)
            if error:
                errors.append(error)
            else:
                result[section][known[key].name] = converted
    if errors:
        raise ConfigError(f"config file {path}:\n  " + "\n  ".join(errors))
    return {name: values for name, values in result.items() if values}


def effective(group: Any, default_map: Mapping[str, Mapping[str, Any]], environ: Mapping[str, str],
              command: str) -> list[dict[str, Any]]:
    """Each setting of ``command`` (by its file key) with the value that applies and where it comes from
    (secrets masked)."""
    cmd = group.commands[command]
    rows = []
    for param in _configurable(cmd):
        name = param.name
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
        rows.append({"command": command, "setting": _keys(param)[0], "value": value, "source": source, "env": envvars,
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
