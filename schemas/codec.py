"""orjson codec for the records in :mod:`schemas.records`.

Decoding validates every field against the record's annotations, because the bytes come from other
processes and other teams: a wrong type must become a :class:`SchemaError` that a caller can dead-letter,
never a half-built record. Unknown fields are ignored so that newer producers do not break older consumers.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

import msgspec
import orjson

from schemas.records import RECORD_TYPES, SCHEMA_VERSION, Digits, Minimum, Record

R = TypeVar("R", bound=Record)
_MISSING = object()


class SchemaError(ValueError):
    """Bytes that do not decode to a valid record; the message says which field and why."""


Check = Callable[[Any], Any]


def _check_for(annotation: Any, name: str) -> tuple[Check, bool]:
    """Build a converter for one annotation; returns (converter, optional)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Annotated:
        return _constrained(args[0], args[1], name), False
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        check, _ = _check_for(inner[0], name)

        def optional(value: Any) -> Any:
            return None if value is None else check(value)

        return optional, True
    if origin is Literal:
        allowed = set(args)

        def literal(value: Any) -> Any:
            if value not in allowed:
                raise SchemaError(f"{name}: expected one of {sorted(allowed)}, got {value!r}")
            return value

        return literal, False
    if origin is list:
        (item_type,) = args
        item_check, _ = _check_for(item_type, f"{name}[]")

        def list_of(value: Any) -> Any:
            if not isinstance(value, list):
                raise SchemaError(f"{name}: expected a list, got {type(value).__name__}")
            return [item_check(v) for v in value]

        return list_of, False
    if origin is dict:
        key_check, _ = _check_for(args[0], f"{name}{{key}}")
        value_check, _ = _check_for(args[1], f"{name}{{value}}")

        def dict_of(value: Any) -> Any:
            if not isinstance(value, dict):
                raise SchemaError(f"{name}: expected an object, got {type(value).__name__}")
            return {key_check(k): value_check(v) for k, v in value.items()}

        return dict_of, False
    if annotation in RECORD_TYPES:  # a record inside a record (a block's transfers)
        nested: Any = annotation

        def record(value: Any) -> Any:
            if not isinstance(value, dict):
                raise SchemaError(f"{name}: expected a {nested.TYPE} object, got {type(value).__name__}")
            try:
                return _build(nested, _SPECS[nested.TYPE][1], value)
            except SchemaError as exc:
                raise SchemaError(f"{name}.{exc}") from None

        return record, False
    if isinstance(annotation, type) and issubclass(annotation, StrEnum):
        # a dict lookup, not ``enum_type(value)``: the enum call was a visible share of decoding a transfer
        members: dict[Any, Any] = {m.value: m for m in annotation}
        choices = list(members)

        def enum(value: Any) -> Any:
            member = members.get(value) if isinstance(value, str) else None
            if member is None:
                raise SchemaError(f"{name}: expected one of {choices}, got {value!r}")
            return member

        return enum, False
    if annotation is bool:

        def boolean(value: Any) -> Any:
            if not isinstance(value, bool):
                raise SchemaError(f"{name}: expected a boolean, got {value!r}")
            return value

        return boolean, False
    if annotation is int:

        def integer(value: Any) -> Any:
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer() and abs(value) >= 2**63:
                    # the JSON parser reads integers beyond 64 bits as floats: say what was sent
                    raise SchemaError(f"{name}: integer out of the 64-bit range ({value:.3g})")
                raise SchemaError(f"{name}: expected an integer, got {value!r}")
            return value

        return integer, False
    if annotation is float:

        def number(value: Any) -> Any:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SchemaError(f"{name}: expected a number, got {value!r}")
            return float(value)

        return number, False
    if annotation is str:

        def string(value: Any) -> Any:
            if not isinstance(value, str):
                raise SchemaError(f"{name}: expected a string, got {value!r}")
            return value

        return string, False
    raise TypeError(f"no codec for {name}: {annotation!r}")


def _constrained(annotation: Any, constraint: Any, name: str) -> Check:
    """A converter for a type with one of the contract's constraints (:class:`Minimum`, :class:`Digits`).

    One function with the common case first, not the plain check wrapped in another: a transfer has five
    such fields, and a wrapper's call per field was a third of its decoding time."""
    base, _ = _check_for(annotation, name)
    if isinstance(constraint, Minimum) and annotation in (int, float):
        least = constraint.value
        exact = annotation

        def at_least(value: Any) -> Any:
            if type(value) is exact and value >= least:
                return value
            value = base(value)  # the plain check's errors (and an int for a float field)
            if value < least:
                raise SchemaError(f"{name}: must be at least {least}, got {value!r}")
            return value

        return at_least
    if isinstance(constraint, Digits) and annotation is str:

        def digits(value: Any) -> Any:
            if type(value) is str and value.isascii() and value.isdigit():
                return value
            value = base(value)
            raise SchemaError(f"{name}: expected decimal digits only, got {value[:40]!r}")

        return digits
    raise TypeError(f"no codec for {name}: {annotation!r} with {constraint!r}")


class _FieldSpec(typing.NamedTuple):
    """What decoding needs of one field (a tuple: unpacked in the decode loop, the fastest access)."""

    name: str
    check: Check
    required: bool
    default: Callable[[], Any]
    """The field's value when the input leaves it out (``required`` false)."""
    put: Callable[[Any, Any], None]
    """Sets the field on a record under construction (its slot's ``__set__``)."""


def _specs(record_type: type[Any]) -> tuple[_FieldSpec, ...]:
    hints = typing.get_type_hints(record_type, include_extras=True)
    specs = []
    for f in dataclasses.fields(record_type):
        check, _ = _check_for(hints[f.name], f.name)
        if f.default_factory is not dataclasses.MISSING:
            default: Callable[[], Any] = f.default_factory
        else:
            default = functools.partial(_constant, f.default)
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        specs.append(_FieldSpec(f.name, check, not has_default, default, getattr(record_type, f.name).__set__))
    return tuple(specs)


def _constant(value: Any) -> Any:
    return value


_SPECS: dict[str, tuple[type[Any], tuple[_FieldSpec, ...]]] = {
    t.TYPE: (t, _specs(t)) for t in RECORD_TYPES
}


def encode(record: Record) -> bytes:
    """Serialise a record to compact JSON bytes (enums as their string values)."""
    return orjson.dumps(record)


def from_dict(data: Any) -> Record:
    """Validate a decoded JSON object and build its record."""
    if not isinstance(data, dict):
        raise SchemaError(f"expected a JSON object, got {type(data).__name__}")
    type_tag = data.get("type")
    entry = _SPECS.get(type_tag) if isinstance(type_tag, str) else None
    if entry is None:
        raise SchemaError(f"type: unknown record type {type_tag!r}; expected one of {sorted(_SPECS)}")
    record_type, specs = entry
    return typing.cast(Record, _build(record_type, specs, data))


def _build(record_type: type[Any], specs: tuple[_FieldSpec, ...], data: dict[str, Any]) -> Any:
    """One record from its validated fields (a record nested in another too: a block's transfers).

    Each field is set straight into the new record's slot: the frozen dataclass's ``__init__`` (keyword
    arguments, then ``object.__setattr__`` per field) took over half of a transfer's decode, ~3 µs of ~6,
    and a worker decodes every transfer. The records have no ``__post_init__`` to skip."""
    version = data.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise SchemaError(f"schema_version: this reader understands {SCHEMA_VERSION}, got {version!r}")
    record = object.__new__(record_type)
    get = data.get
    for name, check, required, default, put in specs:
        value = get(name, _MISSING)
        if value is _MISSING:
            if required:
                raise SchemaError(f"{name}: missing in {record_type.TYPE} record")
            put(record, default())
        else:
            put(record, check(value))
    return record


_TYPED: dict[bytes, msgspec.json.Decoder[Any]] = {
    f'"type":"{t.TYPE}"'.encode(): msgspec.json.Decoder(t) for t in RECORD_TYPES
}
"""A typed msgspec decoder per record type, keyed by the type tag as :func:`encode` writes it."""


def _typed(payload: bytes) -> Record | None:
    """The record, decoded and validated by msgspec in C when the payload ends with its type tag as
    :func:`encode` writes it (the last field, ``..."type":"transfer"}``); None to take the slow path.

    Why two decoders: the Python one (:func:`from_dict`) costs ~8 µs per transfer, more than the detector
    spends on one; msgspec's, under 1 µs. Only input msgspec refuses, or a record whose tag is not last (another
    producer's field order), goes the Python way, which says precisely what is wrong."""
    end = payload.rstrip()
    close = end.rfind(b'"type":"')
    if close < 0:
        return None
    decoder = _TYPED.get(end[close:-1])
    if decoder is None:
        return None
    try:
        record = decoder.decode(payload)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    return record if _current(record) else None


def _current(record: Any) -> bool:
    """Whether the record and every record inside it carry this reader's schema version (what
    :func:`_build` insists on)."""
    if record.schema_version != SCHEMA_VERSION:
        return False
    inner = getattr(record, "transfers", None)
    if inner is not None and any(t.schema_version != SCHEMA_VERSION for t in inner):
        return False
    head = getattr(record, "head", None)
    return head is None or head.schema_version == SCHEMA_VERSION


def decode(payload: bytes | str) -> Record:
    """Decode bytes from a topic or a file line into a validated record."""
    if isinstance(payload, bytes):
        record = _typed(payload)
        if record is not None:
            return record
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise SchemaError(f"not valid JSON: {exc}") from None
    return from_dict(data)


def decode_as(payload: bytes | str, record_type: type[R]) -> R:
    """Decode and insist on one record type (e.g. the outage topic carries only outages)."""
    record = decode(payload)
    if not isinstance(record, record_type):
        raise SchemaError(f"type: expected {record_type.TYPE}, got {record.TYPE}")
    return record
