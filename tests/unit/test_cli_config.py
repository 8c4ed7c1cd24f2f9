"""The config file, its validation messages, precedence, and the operator commands' --json output."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import typer
from typer.testing import CliRunner

from haltwatch.cli import app, hoist_config
from haltwatch.config import ConfigError, load_config

GROUP = typer.main.get_command(app)
runner = CliRunner()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "haltwatch.toml"
    path.write_text(text)
    return path


def test_a_valid_file_becomes_per_command_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, """
kafka = "kafka-1:9092"
partitions = 12
[worker]
web-port = 7000
alert_webhook = "https://hooks.example.com/x"
[connect]
chain = "ethereum"
ws_url = "wss://node/ws"
labels = ["labels/eth.toml", "/etc/abs.toml"]
""")
    got = load_config(path, GROUP)
    assert got["worker"]["kafka"] == got["connect"]["kafka"] == "kafka-1:9092"
    assert "kafka" not in got.get("status", {}), "only commands that have the option get it"
    assert got["worker"]["partitions"] == 12 and got["worker"]["web_port"] == 7000
    assert got["connect"]["ws_url"] == ["wss://node/ws"]
    assert got["connect"]["labels"] == [tmp_path.resolve() / "labels/eth.toml", Path("/etc/abs.toml")]
    assert "web_port" not in got.get("connect", {})


@pytest.mark.parametrize(("text", "message"), [
    ("prefx = 'x'", "prefx: no command has this setting (did you mean prefix?)"),
    ("[worker]\nweb_prot = 1", "[worker] web_prot: not a setting of `haltwatch worker` (did you mean web_port?)"),
    ("[worker]\nweb_port = 'abc'", "[worker] web_port = 'abc': must be an integer"),
    ("[worker]\nclickhouse_url = 5", "[worker] clickhouse_url = 5: must be a string (in quotes)"),
    ("[connect]\nlabels = ['a.toml', 3]", "[connect] labels = ['a.toml', 3]: must be a path string"),
    ("[worker]\nweb_port = 70000", "[worker] web_port = 70000: Input should be less than or equal to 65535"),
    ("partitions = 0", "partitions = 0: Input should be greater than or equal to 1"),
    ("[wroker]\nx = 1", "[wroker] is not a command (did you mean worker?)"),
    ("kafka = [", "is not valid TOML"),
])
def test_each_problem_is_named_with_its_reason(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), GROUP)
    assert message in str(info.value) and str(tmp_path) in str(info.value)


def test_all_problems_at_once_and_secrets_masked(tmp_path: Path) -> None:
    path = write(tmp_path, "[worker]\nclickhouse_url = 5\nweb_prot = 1\n[connect]\n"
                           "ws_url = ['wss://mainnet.infura.io/ws/v3/0123456789abcdef0123456789abcdef', 7]\n")
    result = runner.invoke(app, ["--config", str(path), "worker"])
    assert result.exit_code == 2
    out = result.output
    assert "[worker] clickhouse_url = 5" in out and "[worker] web_prot" in out
    assert "0123456789abcdef0123456789abcdef" not in out


def test_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--config", str(tmp_path / "nope.toml"), "config"])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_precedence_command_line_then_env_then_file_then_default(tmp_path: Path) -> None:
    path = write(tmp_path, "[worker]\nweb_port = 7000\nweb_host = '0.0.0.0'\n"
                           "clickhouse_url = 'clickhouse://u:hunter2@db:9000/h'\n")
    result = runner.invoke(app, hoist_config(["config", "worker", "--json", "--config", str(path)]),
                           env={"HALTWATCH_WEB_HOST": "10.0.0.1", "HALTWATCH_WEB_PORT": None})
    assert result.exit_code == 0, result.output
    rows = {r["setting"]: r for r in orjson.loads(result.output)}
    assert (rows["web_port"]["value"], rows["web_port"]["source"]) == (7000, "config file")
    assert (rows["web_host"]["value"], rows["web_host"]["source"]) == ("10.0.0.1", "env HALTWATCH_WEB_HOST")
    assert rows["partitions"]["source"] == "default"
    assert rows["clickhouse_url"]["value"] == "clickhouse://u:***@db:9000/h"


def test_config_option_may_follow_the_command() -> None:
    assert hoist_config(["worker", "--config", "f.toml", "-v"]) == ["--config", "f.toml", "worker", "-v"]
    assert hoist_config(["status", "--config=f.toml"]) == ["--config=f.toml", "status"]
    assert hoist_config(["status", "--json"]) == ["status", "--json"]


def test_every_command_and_option_explains_itself() -> None:
    for name, command in GROUP.commands.items():
        assert command.help, f"haltwatch {name} has no help"
        for param in command.params:
            if param.name in ("help",) or param.param_type_name == "argument":
                continue
            assert param.help, f"haltwatch {name} --{param.name} has no help"


@pytest.fixture
def worker_api() -> Iterator[tuple[str, dict[str, Any]]]:
    answer: dict[str, Any] = {"code": 200, "body": {"status": "ok", "checks": []}}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = orjson.dumps(answer["body"])
            self.send_response(answer["code"])
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", answer
    finally:
        server.shutdown()


def test_health_command_exit_codes(worker_api: tuple[str, dict[str, Any]]) -> None:
    url, answer = worker_api
    answer["body"] = {"status": "degraded", "checks": [{"name": "chains", "status": "degraded", "reason": "x"}]}
    result = runner.invoke(app, ["health", "--api", url, "--json"])
    assert result.exit_code == 0 and orjson.loads(result.output)["status"] == "degraded"
    answer["code"], answer["body"] = 503, {"status": "failing", "checks": [
        {"name": "kafka", "status": "failing", "reason": "no partition"}]}
    result = runner.invoke(app, ["health", "--api", url])
    assert result.exit_code == 1 and "kafka" in result.output and "no partition" in result.output
    result = runner.invoke(app, ["health", "--api", "http://127.0.0.1:9", "--json"])
    assert result.exit_code == 2 and orjson.loads(result.output)["status"] == "unreachable"
