"""What a ClickHouse URL turns into for clickhouse-driver: plain or TLS, the TLS options, the settings."""

from __future__ import annotations

import pytest

from streams.store.backend import DriverBackend, is_transient


def test_a_plain_url_keeps_its_query_as_clickhouse_settings() -> None:
    connect = DriverBackend("clickhouse://u:p%40ss@db:9001/hw?max_execution_time=30")._connect
    assert (connect["host"], connect["port"], connect["user"], connect["password"]) == ("db", 9001, "u", "p@ss")
    assert connect["settings"] == {"max_execution_time": 30} and "secure" not in connect


@pytest.mark.parametrize("url", ["clickhouses://db/hw?ca_certs=/etc/ca.pem&insert_block_size=5",
                                 "clickhouse://db/hw?secure=true&ca_certs=/etc/ca.pem&insert_block_size=5"])
def test_tls_takes_its_own_options_and_the_secure_port(url: str) -> None:
    connect = DriverBackend(url)._connect
    assert (connect["secure"], connect["verify"], connect["ca_certs"], connect["port"]) == (
        True, True, "/etc/ca.pem", 9440)
    assert connect["settings"] == {"insert_block_size": 5}, "TLS options are not sent as server settings"
    assert DriverBackend("clickhouses://db:19440/hw?verify=false")._connect["verify"] is False


def test_tls_options_without_tls_are_refused() -> None:
    with pytest.raises(ValueError, match="ca_certs need TLS: use clickhouses://"):
        DriverBackend("clickhouse://db/hw?ca_certs=/etc/ca.pem")
    with pytest.raises(ValueError, match="must start with clickhouse:// or clickhouses://"):
        DriverBackend("http://db:8123/hw")


def test_an_untrusted_certificate_is_not_retried_but_a_dropped_connection_is() -> None:
    assert not is_transient(OSError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"))
    assert is_transient(ConnectionRefusedError(111, "Connection refused"))
