"""Rows to columns, and columns to an Arrow stream typed after the ClickHouse table.

The sink inserts column by column: both backends take columns natively (Arrow for chdb, clickhouse-
driver's ``columnar=True`` for a server), so a batch is transposed once instead of being serialised row
by row. Arrow types come from the table's own column types rather than from inference, so a column that
happens to be all NULL in one batch still has the right type.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

Columns = dict[str, list[Any]]
"""Column name → values, all lists of the same length."""


def transpose(rows: Sequence[Mapping[str, Any]]) -> Columns:
    """Columns of ``rows``; every row must have the first row's keys."""
    if not rows:
        return {}
    return {name: [r[name] for r in rows] for name in rows[0]}


def column_length(columns: Mapping[str, Sequence[Any]]) -> int:
    """Number of rows held by ``columns`` (0 when there are none)."""
    return len(next(iter(columns.values()))) if columns else 0


def take(columns: Mapping[str, Sequence[Any]], keep: Sequence[int]) -> Columns:
    """Only the rows at the indices ``keep``, in that order."""
    return {name: [values[i] for i in keep] for name, values in columns.items()}


_WRAPPER = re.compile(r"^(?:LowCardinality|Nullable)\((.*)\)$")
_INTS = {
    "UInt8": "uint8", "UInt16": "uint16", "UInt32": "uint32", "UInt64": "uint64",
    "Int8": "int8", "Int16": "int16", "Int32": "int32", "Int64": "int64",
}


def _arrow_type(ch_type: str) -> Any:
    import pyarrow as pa  # type: ignore[import-untyped]  # a dependency of chdb-core, used only with chdb

    inner = ch_type
    while (m := _WRAPPER.match(inner)) is not None:
        inner = m.group(1)
    if inner == "String":
        return pa.string()
    if inner in _INTS:
        return getattr(pa, _INTS[inner])()
    if inner in ("Float32", "Float64"):
        return pa.float64()
    if inner.startswith("DateTime") and not inner.startswith("DateTime64"):
        return pa.uint32()  # seconds since the epoch, as the rows carry them
    if inner.startswith("Array(") and inner.endswith(")"):
        item = _arrow_type(inner[len("Array("):-1])
        return None if item is None else pa.list_(item)
    return None  # let Arrow infer it


def arrow_stream(columns: Mapping[str, Sequence[Any]], ch_types: Mapping[str, str]) -> bytes:
    """An Arrow IPC stream of ``columns``, typed after the table's ClickHouse types ``ch_types``."""
    import pyarrow as pa

    arrays = []
    for name, values in columns.items():
        arrow_type = _arrow_type(ch_types[name]) if name in ch_types else None
        arrays.append(pa.array(values, type=arrow_type))
    table = pa.Table.from_arrays(arrays, names=list(columns))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]
