"""The store over TLS with a password user (Debian's ClickHouse 18.16 serves the native protocol over TLS on
``tcp_port_secure``): migrations, the sink's insert and the operator's query work; a wrong password or an
untrusted certificate stops the worker in one line with exit 2 before it starts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from schemas import Direction, TransferEvent
from streams.store.backend import DriverBackend, refused_store_access
from streams.store.migrate import open_migrated
from streams.store.queries import withdrawal_count
from streams.store.rows import transfer_row

REPO = Path(__file__).resolve().parents[2]


def url(ch: dict[str, str], password: str | None = None, ca: bool = True) -> str:
    query = f"?ca_certs={ch['ca']}" if ca else ""
    return f"clickhouses://{ch['user']}:{password or ch['password']}@{ch['secure']}/haltwatch_tls{query}"


def test_the_store_works_over_tls_with_a_password_user(secure_clickhouse: dict[str, str], tmp_path: Path) -> None:
    assert refused_store_access(url(secure_clickhouse)) is None
    backend = open_migrated(url(secure_clickhouse), tmp_path / "unused-chdb")
    try:
        assert isinstance(backend, DriverBackend)
        transfer = TransferEvent("ethereum", 1, "0xb1", 1_700_000_000, "0xt1", 0, "native", "5", 18, "0xhot",
                                 "0xuser", "okx-tls", Direction.WITHDRAWAL)
        backend.insert("transfers", [transfer_row(transfer, 1)])
        assert withdrawal_count(backend, "okx-tls") == 1
        (row,) = backend.query("SELECT 1 AS one")
        assert row == {"one": 1}
    finally:
        backend.close()


@pytest.mark.parametrize(("case", "expected"), [
    ("wrong password", "Wrong password for user haltwatch"),
    ("untrusted certificate", "CERTIFICATE_VERIFY_FAILED"),
])
def test_a_refused_store_stops_the_worker_in_one_line(secure_clickhouse: dict[str, str], tmp_path: Path,
                                                      case: str, expected: str) -> None:
    target = url(secure_clickhouse, password="not-it" if case == "wrong password" else None,
                 ca=case != "untrusted certificate")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HALTWATCH_")}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "haltwatch", "worker", "--clickhouse-url", target,
                             "--data-dir", str(tmp_path / "w")], env=env, cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ClickHouse refused the connection: ") and (
        expected in lines[0]), result.stderr
    assert "not-it" not in result.stderr and secure_clickhouse["password"] not in result.stderr
    assert time.monotonic() - started < 60
