"""Writing to ClickHouse does not cost every worker clickhouse-driver's full date tables.

The driver fills two dicts with every day from 1900 to 2299 (~20 MB) when its column types are first imported,
unless ``CLICKHOUSE_DRIVER_LASY_DATE_LUT`` is set by then; ``streams.store.backend`` sets it. Checked in a fresh
interpreter: in this one, another test may have imported the driver first.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from streams.store.backend import DATE_LUT_ENV

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import datetime, os, sys, orjson, tracemalloc
tracemalloc.start()
from streams.store.backend import DriverBackend
backend = DriverBackend("clickhouse://127.0.0.1:1/haltwatch")
backend._client()  # the worker's way to the driver: its Client, which imports every column type
from clickhouse_driver.columns.datecolumn import DateColumn
lut, reverse = DateColumn.date_lut, DateColumn.date_lut_reverse
ok = lut[(datetime.date(2150, 1, 1) - datetime.date(1970, 1, 1)).days] == datetime.date(2150, 1, 1)
print(orjson.dumps({"lut": len(lut), "reverse": len(reverse), "traced": tracemalloc.get_traced_memory()[0],
                    "ok": ok, "env": os.environ.get(sys.argv[1])}).decode())
"""


def probe() -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != DATE_LUT_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, "-c", PROBE, DATE_LUT_ENV], env=env, cwd=ROOT, capture_output=True, check=True
    )
    return dict(orjson.loads(out.stdout.splitlines()[-1]))


def test_the_driver_date_tables_are_filled_on_demand() -> None:
    found = probe()
    assert found["env"] is not None
    assert int(str(found["lut"])) < 10_000, found  # the eager table has 146,097 days
    assert int(str(found["reverse"])) < 10_000, found
    assert int(str(found["traced"])) < 12_000_000, found  # eager: ~20 MB more
    assert found["ok"] is True  # a day outside the warmed range is still converted
