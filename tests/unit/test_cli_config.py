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


def test_a_valid_file_becomes_per_command_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, """
kafka = "kafka-1:9092"
partitions = 12
[worker]
web-port = 7000
alert-webhook = "https://hooks.example.com/x"
[connect]
chain = "ethereum"
ws-url = "wss://node/ws"
labels = ["labels/eth.toml", "/etc/abs.toml"]
kafka-security-protocol = "SSL"
[backtest]
input = "events.jsonl"
json = true
progress = false
""")
    (tmp_path / "events.jsonl").write_text("")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # --input must exist: beside the file, not in the working directory
    got = load_config(path, GROUP)
    assert got["worker"]["kafka"] == got["connect"]["kafka"] == "kafka-1:9092"
    assert "kafka" not in got.get("status", {}), "only commands that have the option get it"
    assert got["worker"]["partitions"] == 12 and got["worker"]["web_port"] == 7000
    assert got["connect"]["ws_url"] == ["wss://node/ws"]
    assert got["connect"]["labels"] == [tmp_path.resolve() / "labels/eth.toml", Path("/etc/abs.toml")]
    assert "web_port" not in got.get("connect", {})
    assert got["connect"]["kafka_security_protocol"] == "SSL", "the security options' flags are keys too"
    assert got["backtest"] == {"input_path": tmp_path.resolve() / "events.jsonl", "as_json": True, "progress": False}


@pytest.mark.parametrize(("text", "message"), [
    ("[backtest]\ninput_path = 'e.jsonl'",
     "[backtest] input_path: not a setting of `haltwatch backtest` (did you mean input? keys are the flag names"),
    ("[backtest]\nas_json = true", "[backtest] as_json: not a setting of `haltwatch backtest` (did you mean json?"),
    ("[outages]\nall_versions = true", "[outages] all_versions: not a setting of `haltwatch outages` (did you mean "
                                        "all?"),
    ("[connect]\nws_url = 'wss://node/ws'", "[connect] ws_url: not a setting of `haltwatch connect` (did you mean "
                                            "ws-url? keys are the flag names without --)"),
    ("clickhouse_url = 'clickhouse://db:9000/h'", "clickhouse_url: no command has this setting (did you mean "
                                                 "clickhouse-url?"),
    ("kafka_security_protocol = 'SSL'", "(did you mean kafka-security-protocol?"),
    ("[connect]\nno-progress = true", "[connect] no-progress: not a setting of `haltwatch connect`"),
])
def test_keys_are_the_flag_names_not_the_parameter_names(tmp_path: Path, text: str, message: str) -> None:
    """A key is what ``--help`` shows, without ``--``; the Python name of the same option is refused, with the
    flag it stands for suggested."""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), GROUP)
    assert message in str(info.value), str(info.value)


@pytest.mark.parametrize(("text", "message"), [
    ("prefx = 'x'", "prefx: no command has this setting (did you mean prefix?)"),
    ("[worker]\nweb-prot = 1", "[worker] web-prot: not a setting of `haltwatch worker` (did you mean web-port?)"),
    ("[worker]\nweb_prot = 1", "[worker] web_prot: not a setting of `haltwatch worker` (did you mean web-port?)"),
    ("[worker]\nweb-port = 'abc'", "[worker] web-port = 'abc': must be an integer"),
    ("[worker]\nclickhouse-url = 5", "[worker] clickhouse-url = 5: must be a string (in quotes)"),
    ("[connect]\nlabels = ['a.toml', 3]", "[connect] labels = ['a.toml', 3]: must be a path string"),
    ("[worker]\nweb-port = 70000", "[worker] web-port = 70000: Input should be less than or equal to 65535"),
    ("partitions = 0", "partitions = 0: Input should be greater than or equal to 1"),
    ("[wroker]\nx = 1", "[wroker] is not a command (did you mean worker?)"),
    ("kafka = [", "is not valid TOML"),
    ("[worker]\nbudget-days = nan", "[worker] budget-days = nan: expected a finite number above 0, got nan"),
    ("[worker]\nfalse-alarms = inf", "[worker] false-alarms = inf: expected a finite number above 0"),
    ("kafka = '127.0.0.1:notaport'", "kafka = '127.0.0.1:notaport': expected host:port (port 1-65535)"),
    ("[connect]\nws-url = 'not a url'",
     "[connect] ws-url = ['not a url']: expected a URL starting with ws:// or wss://"),
    ("clickhouse-url = 'http://db:8123'",
     "clickhouse-url = 'http://db:8123': expected a URL starting with clickhouse://"),
    ("[worker]\nalert-webhook = 'hooks.slack.com/x'",
     "expected a URL starting with http:// or https:// and naming a host"),
])
def test_each_problem_is_named_with_its_reason(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), GROUP)
    assert message in str(info.value) and str(tmp_path) in str(info.value)


def test_all_problems_at_once_and_secrets_masked(tmp_path: Path) -> None:
    path = write(tmp_path, "[worker]\nclickhouse-url = 5\nweb-prot = 1\n[connect]\n"
                           "ws-url = ['wss://mainnet.infura.io/ws/v3/0123456789abcdef0123456789abcdef', 7]\n")
    result = runner.invoke(app, ["--config", str(path), "worker"])
    assert result.exit_code == 2
    out = result.output
    assert "[worker] clickhouse-url = 5" in out and "[worker] web-prot" in out
    assert "0123456789abcdef0123456789abcdef" not in out


def test_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--config", str(tmp_path / "nope.toml"), "config"])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_precedence_command_line_then_env_then_file_then_default(tmp_path: Path) -> None:
    path = write(tmp_path, "[worker]\nweb-port = 7000\nweb-host = '0.0.0.0'\n"
                           "clickhouse-url = 'clickhouse://u:hunter2@db:9000/h'\n")
    result = runner.invoke(app, hoist_config(["config", "worker", "--json", "--config", str(path)]),
                           env={"HALTWATCH_WEB_HOST": "10.0.0.1", "HALTWATCH_WEB_PORT": None})
    assert result.exit_code == 0, result.output
    rows = {r["setting"]: r for r in orjson.loads(result.output)}
    assert (rows["web-port"]["value"], rows["web-port"]["source"]) == (7000, "config file")
    assert (rows["web-host"]["value"], rows["web-host"]["source"]) == ("10.0.0.1", "env HALTWATCH_WEB_HOST")
    assert rows["partitions"]["source"] == "default"
    assert rows["clickhouse-url"]["value"] == "clickhouse://u:***@db:9000/h"
    assert "web_port" not in rows, "settings are shown by the key the file takes"


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


@pytest.mark.parametrize(("args", "env", "flag", "message"), [
    (["--false-alarms", "nan"], {}, "--false-alarms", "expected a finite number above 0, got 'nan'"),
    (["--false-alarms", "inf"], {}, "--false-alarms", "expected a finite number above 0, got 'inf'"),
    (["--budget-days", "-1"], {}, "--budget-days", "expected a finite number above 0, got '-1'"),
    ([], {"HALTWATCH_BUDGET_DAYS": "nan"}, "--budget-days", "expected a finite number above 0, got 'nan'"),
    (["--kafka", "127.0.0.1:notaport"], {}, "--kafka", "expected host:port (port 1-65535)"),
    (["--clickhouse-url", "http://db:8123/x"], {}, "--clickhouse-url",
     "expected a URL starting with clickhouse:// or clickhouses:// and naming a host, got 'http://db:8123/x'"),
    (["--alert-webhook", "ftp://hooks/x"], {}, "--alert-webhook", "expected a URL starting with http:// or https://"),
])
def test_a_bad_setting_stops_the_worker_before_it_connects_with_one_line(
    args: list[str], env: dict[str, str], flag: str, message: str
) -> None:
    """Checked by the option's own type, so nothing starts: a NaN budget used to start a worker that never
    opened an outage."""
    result = runner.invoke(app, ["worker", *args], env=env)
    assert result.exit_code == 2, result.output
    error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and error[0].startswith(f"Error: Invalid value for '{flag}'"), result.stderr
    assert message in error[0] and "HALTWATCH_" in error[0], "names the flag and its environment variable"


@pytest.mark.parametrize(("args", "message"), [
    (["--clickhouse-cluster", "main"], "needs a ClickHouse server (--clickhouse-url)"),
    (["--clickhouse-cluster", "main;DROP", "--clickhouse-url", "clickhouse://db:9000/x"], "plain identifier"),
])
def test_a_cluster_without_a_server_or_with_a_bad_name_stops_the_worker_with_one_line(
    args: list[str], message: str
) -> None:
    result = runner.invoke(app, ["worker", *args])
    assert result.exit_code == 2, result.output
    error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "--clickhouse-cluster" in error[0] and message in result.stderr, result.stderr


def test_a_bad_websocket_url_stops_the_connector_with_one_line() -> None:
    result = runner.invoke(app, ["connect", "--chain", "ethereum", "--labels", ".", "--ws-url", "wss://a/x",
                                 "--ws-url", "http://b"])
    assert result.exit_code == 2
    assert "Error: Invalid value for '--ws-url' (env var: 'HALTWATCH_WS_URL'): expected a URL starting with ws:// " \
           "or wss:// and naming a host, got 'http://b'" in result.stderr


def test_config_names_every_bad_environment_value_and_exits_2() -> None:
    env = {"HALTWATCH_PARTITIONS": "eight", "HALTWATCH_WEB_PORT": "99999", "HALTWATCH_WORKER_ROLE": "bogus",
           "HALTWATCH_FALSE_ALARMS": "nan"}
    result = runner.invoke(app, ["config", "worker"], env=env)
    assert result.exit_code == 2
    errors = sorted(line for line in result.stderr.splitlines() if line.startswith("error: "))
    assert [e.split(":", 2)[1].strip() for e in errors] == [
        "HALTWATCH_FALSE_ALARMS='nan'", "HALTWATCH_PARTITIONS='eight'", "HALTWATCH_WEB_PORT='99999'",
        "HALTWATCH_WORKER_ROLE='bogus'",
    ]
    assert result.stdout.count("<- invalid") == 4
    assert runner.invoke(app, ["config", "worker"], env={"HALTWATCH_PARTITIONS": "8"}).exit_code == 0


def test_the_detection_policy_refuses_a_budget_that_is_not_a_finite_positive_number() -> None:
    from streams.detection.policy import DetectionPolicy

    for bad in (float("nan"), float("inf"), 0.0, -1.0):
        with pytest.raises(ValueError, match="must be a finite number above 0"):
            DetectionPolicy(false_alarms_per_exchange=bad)
        with pytest.raises(ValueError, match="must be a finite number above 0"):
            DetectionPolicy(budget_days=bad)


@pytest.mark.parametrize("command", ["connect", "backfill", "worker", "follow"])
def test_commands_with_kafka_security_options_still_read_their_environment(command: str) -> None:
    """The security options are added by a decorator: the command's own options keep their variables."""
    required = {"connect": ["--chain", "ethereum", "--labels", "."],
                "backfill": ["--chain", "ethereum", "--ws-url", "ws://node", "--labels", ".", "--from-block", "1",
                             "--to-block", "2"]}.get(command, [])
    result = runner.invoke(app, [command, *required], env={"HALTWATCH_KAFKA_BOOTSTRAP": "no-port-here"})
    assert result.exit_code == 2
    assert "Invalid value for '--kafka' (env var: 'HALTWATCH_KAFKA_BOOTSTRAP')" in result.stderr, result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--kafka-security-protocol", "TLS"], "expected one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL, got 'TLS'"),
    (["--kafka-security-protocol", "SASL_SSL"], "SASL_SSL needs one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
    (["--kafka-security-protocol", "SASL_SSL", "--kafka-sasl-mechanism", "scram-sha-512"],
     "SASL_SSL needs both --kafka-sasl-username and --kafka-sasl-password"),
    (["--kafka-sasl-username", "u", "--kafka-sasl-password", "p"], "--kafka-security-protocol is PLAINTEXT"),
    (["--kafka-security-protocol", "SSL", "--kafka-ssl-cafile", "/no/such/ca.pem"],
     "--kafka-ssl-cafile: /no/such/ca.pem is not a readable file"),
])
def test_contradictory_kafka_security_is_a_usage_error_naming_the_flags(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["follow", *args])
    assert result.exit_code == 2 and message in result.stderr, result.stderr


def test_a_backwards_block_range_is_a_usage_error() -> None:
    result = runner.invoke(app, ["backfill", "--chain", "ethereum", "--ws-url", "ws://node", "--labels", ".",
                                 "--from-block", "10", "--to-block", "5"])
    assert result.exit_code == 2
    assert "Invalid value for '--to-block': must be at least --from-block (10), got 5" in result.stderr


@pytest.mark.parametrize("problem", ["garbage", "under a file"])
def test_a_checkpoint_that_cannot_work_stops_the_connector_before_kafka(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, problem: str
) -> None:
    import connectors.run_feed as run_feed

    def no_kafka(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("Kafka was contacted before the checkpoint was checked")

    monkeypatch.setattr(run_feed, "ensure_topics", no_kafka)
    if problem == "garbage":
        checkpoint = tmp_path / "cp.json"
        checkpoint.write_text("not json")
    else:
        (tmp_path / "file").write_text("x")
        checkpoint = tmp_path / "file" / "cp.json"
    labels = Path(__file__).resolve().parents[2] / "labels" / "ethereum.toml"
    result = runner.invoke(app, ["connect", "--chain", "ethereum", "--ws-url", "ws://127.0.0.1:1", "--labels",
                                 str(labels), "--checkpoint", str(checkpoint), "--kafka", "127.0.0.1:1"])
    assert result.exit_code == 3, result.output


@pytest.mark.parametrize("command", ["status", "outages"])
def test_an_unreachable_store_is_one_error_line_not_a_traceback(command: str) -> None:
    result = runner.invoke(app, [command, "--clickhouse-url", "clickhouse://127.0.0.1:1/haltwatch"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == ["error: Code: 210. Connection refused (127.0.0.1:1)"], result.stderr


@pytest.mark.parametrize(("value", "level"), [(None, "CRITICAL"), ("info", "INFO"), ("chatty", "CRITICAL")])
def test_the_client_libraries_log_at_their_own_level(value: str | None, level: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    from access.kafka_security import CLIENT_LIBRARIES, quiet_client_libraries

    if value is None:
        monkeypatch.delenv("HALTWATCH_CLIENT_LOG_LEVEL", raising=False)
    else:
        monkeypatch.setenv("HALTWATCH_CLIENT_LOG_LEVEL", value)
    saved = {name: logging.getLogger(name).level for name in CLIENT_LIBRARIES}
    try:
        quiet_client_libraries()
        assert {logging.getLevelName(logging.getLogger(n).level) for n in CLIENT_LIBRARIES} == {level}
    finally:
        for name, old in saved.items():
            logging.getLogger(name).setLevel(old)
