"""JSON Schema documents for the records, derived from their annotations.

The committed files under ``schemas/json/`` are what consumers in other languages read; deriving them from
the same annotations the codec validates against keeps the two from drifting (a test regenerates and
compares). Regenerate with ``python -m schemas.jsonschema``.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from schemas.records import RECORD_TYPES, SCHEMA_VERSION, Digits, Minimum

JSON_DIR = Path(__file__).parent / "json"
_DESCRIPTIONS = {
    "block_time": "Block timestamp, integer seconds since the Unix epoch (chain time).",
    "amount": "Raw integer amount in the asset's smallest unit, as a decimal string (may exceed 64 bits).",
    "received_at": "Wall-clock seconds since the Unix epoch when the connector received the block.",
    "emitted_at": "Wall-clock seconds since the Unix epoch when the detector emitted this state change.",
    "started_at": "Block time of the last withdrawal before the silence.",
    "detected_at": "Block time of the chain head at which the detector decided.",
    "resolved_at": "Block time of the first withdrawal after the silence; null while unresolved.",
    "log_index": "Index of the log in its block; -1 for a native-coin transfer.",
    "asset": "Token contract address (lower-case), or 'native' for the chain's own coin.",
    "removed": "True for a retraction: the block was orphaned by a reorg.",
    "version": "Grows with each state change of one outage_id; keep the highest.",
    "scope": "Chains the incident covers; several chains means an exchange-wide incident.",
}


def _schema_for(annotation: Any) -> dict[str, Any]:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Annotated:
        schema = _schema_for(args[0])
        for constraint in args[1:]:
            if isinstance(constraint, Minimum):
                schema["minimum"] = constraint.value
            elif isinstance(constraint, Digits):
                schema["pattern"] = constraint.pattern
        return schema
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return {"anyOf": [_schema_for(inner[0]), {"type": "null"}]}
    if origin is Literal:
        return {"const": args[0]} if len(args) == 1 else {"enum": list(args)}
    if origin is list:
        return {"type": "array", "items": _schema_for(args[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": _schema_for(args[1])}
    if annotation in RECORD_TYPES:  # a record inside a record (a block's transfers)
        return {"$ref": f"urn:haltwatch:schema:{annotation.TYPE}:v{SCHEMA_VERSION}"}
    if isinstance(annotation, type) and issubclass(annotation, StrEnum):
        return {"type": "string", "enum": [m.value for m in annotation]}
    simple = {bool: "boolean", int: "integer", float: "number", str: "string"}
    return {"type": simple[annotation]}


def schema_of(record_type: type[Any]) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one record type."""
    hints = typing.get_type_hints(record_type, include_extras=True)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(record_type):
        prop = _schema_for(hints[f.name])
        if f.name in _DESCRIPTIONS:
            prop["description"] = _DESCRIPTIONS[f.name]
        if f.name == "schema_version":
            prop = {"const": SCHEMA_VERSION}
        properties[f.name] = prop
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    required += [name for name in ("schema_version", "type") if name not in required]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:haltwatch:schema:{record_type.TYPE}:v{SCHEMA_VERSION}",
        "title": record_type.__name__,
        "description": " ".join((record_type.__doc__ or "").split()),
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": True,
    }


def render_all() -> dict[str, str]:
    """File name → text of every schema file, exactly as committed."""
    return {
        f"{t.TYPE}.v{SCHEMA_VERSION}.schema.json": json.dumps(schema_of(t), indent=2) + "\n"
        for t in RECORD_TYPES
    }


def main() -> None:
    JSON_DIR.mkdir(exist_ok=True)
    for name, text in render_all().items():
        (JSON_DIR / name).write_text(text)
        print(f"wrote {JSON_DIR / name}")


if __name__ == "__main__":
    main()
