"""Credentials in URLs never reach logs, tracebacks or error messages."""

from __future__ import annotations

import io
import logging
import sys
import threading

import pytest

from access import secrets
from access.secrets import MASK, redact

INFURA_KEY = "0123456789abcdef0123456789abcdef"
ALCHEMY_KEY = "AbC_dEf-123456789xyzXYZ"
SLACK_TOKEN = "aBcD1234eFgH5678iJkL9012"


@pytest.mark.parametrize(("text", "secret", "kept"), [
    (f"wss://mainnet.infura.io/ws/v3/{INFURA_KEY}", INFURA_KEY, "wss://mainnet.infura.io/ws/v3/"),
    (f"connect to 'wss://eth-mainnet.g.alchemy.com/v2/{ALCHEMY_KEY}' failed", ALCHEMY_KEY, "' failed"),
    ("https://eth.example.com/rpc?apikey=S3cr3t&chain=1", "S3cr3t", "chain=1"),
    ("https://eth.example.com/rpc?token=short&x=1", "short", "x=1"),
    ("clickhouse://haltwatch:hunter2@clickhouse:9000/haltwatch", "hunter2", "haltwatch:***@clickhouse:9000"),
    ("http://user:p%40ss@h/", "p%40ss", "user:"),
    (f"https://hooks.slack.com/services/T0123ABCD/B0123ABCD/{SLACK_TOKEN}", SLACK_TOKEN, "/services/"),
    (f"https://{INFURA_KEY}@rpc.example.com/", INFURA_KEY, "@rpc.example.com/"),
    ("dsn host=db password=hunter2 user=x", "hunter2", "user=x"),
    ("api_key: 'abc def'", "abc def", "api_key"),
])
def test_secrets_are_masked_and_the_rest_kept(text: str, secret: str, kept: str) -> None:
    out = redact(text)
    assert secret not in out and MASK in out and kept in out
    assert redact(out) == out


@pytest.mark.parametrize("text", [
    "ws://127.0.0.1:8545",
    "clickhouse://default@127.0.0.1:29000/haltwatch",
    "tx 0x" + "ab" * 32 + " at https://etherscan.io/tx/0x" + "cd" * 32,
    "token 0x5afe00000000000000000000000000000000c0de paid 12 users",
    "https://grafana.example.com/d/haltwatch-operations/overview?orgId=1",
])
def test_public_things_are_left_alone(text: str) -> None:
    assert redact(text) == text


@pytest.fixture
def installed() -> object:
    secrets.install()
    yield None
    secrets.uninstall()


def test_every_log_record_and_traceback_is_redacted(installed: object) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)  # created after install, like the worker's own handlers
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    logger = logging.getLogger("haltwatch.test.secrets")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("node %s refused", f"wss://mainnet.infura.io/ws/v3/{INFURA_KEY}")
        try:
            raise ConnectionError("clickhouse://haltwatch:hunter2@db:9000/haltwatch is down")
        except ConnectionError:
            logger.exception("insert failed")
        logger.warning("plain %d", 7)
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert INFURA_KEY not in text and "hunter2" not in text
    assert "wss://mainnet.infura.io/ws/v3/***" in text and "haltwatch:***@db" in text
    assert "ConnectionError" in text and "plain 7" in text


def test_uncaught_exceptions_print_redacted(installed: object, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        raise RuntimeError(f"wss://mainnet.infura.io/ws/v3/{INFURA_KEY} closed")
    except RuntimeError:
        sys.excepthook(*sys.exc_info())
    thread = threading.Thread(target=lambda: (_ for _ in ()).throw(ValueError("password=hunter2")))
    thread.start()
    thread.join()
    err = capsys.readouterr().err
    assert "RuntimeError" in err and "ValueError" in err
    assert INFURA_KEY not in err and "hunter2" not in err


def test_filter_for_other_handlers() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "url %s", ("https://a.b/?apikey=zzz",), None)
    assert secrets.RedactingFilter().filter(record)
    assert record.getMessage() == "url https://a.b/?apikey=***"


SLACK = f"https://hooks.slack.com/services/T0123ABCD/B0123ABCD/{SLACK_TOKEN}"
DISCORD = "https://discord.com/api/webhooks/112233445566778899/short-Tok_en"
TELEGRAM = "https://api.telegram.org/bot123456:AAbbCCdd/sendMessage?chat_id=-100200300"
PAGERDUTY = "https://events.pagerduty.com/integration/abcd1234/enqueue"
GENERIC = "https://alerts.example.com/hook/team-risk?sig=x1"


@pytest.fixture
def clean_registry() -> object:
    secrets.forget_registered()
    yield None
    secrets.forget_registered()


@pytest.mark.parametrize(("url", "shown", "secret"), [
    (SLACK, "https://hooks.slack.com/***", SLACK_TOKEN),
    (DISCORD, "https://discord.com/***", "short-Tok_en"),
    (TELEGRAM, "https://api.telegram.org/***", "AAbbCCdd"),
    (PAGERDUTY, "https://events.pagerduty.com/***", "abcd1234"),
    (GENERIC, "https://alerts.example.com/***", "team-risk"),
    ("https://ops:pw1234@alerts.example.com/hooks/x", "https://ops:***@alerts.example.com/***", "pw1234"),
])
def test_a_webhook_is_masked_beyond_its_host_by_rule(url: str, shown: str, secret: str,
                                                     clean_registry: object) -> None:
    """Shape does not matter: a short Discord token or Telegram's bot<id>:<token> is masked like Slack's, in
    ``haltwatch config`` and, once registered, in any text that quotes the URL or a piece of it."""
    assert secrets.mask_webhook(url) == shown
    assert secrets.mask_setting("alert_webhook", url) == shown
    assert secret in redact(f"POST {url.split('://', 1)[1]} failed"), "not masked before it is registered"
    secrets.register_setting("alert_webhook", url)
    for text in (f"POST {url} failed: 404", f"to {url.split('://', 1)[1]}"):
        assert secret not in redact(text), text
    assert secrets.mask_webhook("https://alerts.example.com") == "https://alerts.example.com"


def test_secrets_given_on_the_command_line_the_environment_or_by_setting_name_are_masked_everywhere(
    clean_registry: object,
) -> None:
    secrets.register_command_line(
        ["worker", "--alert-webhook", DISCORD, "--sasl-password=plainword", "--prefix", "haltwatch"],
        {"HALTWATCH_PAGERDUTY_ROUTING_KEY": "R0UT1NGkey", "HALTWATCH_ALERT_WEBHOOK_URL": TELEGRAM,
         "HALTWATCH_CLICKHOUSE_URL": "clickhouses://u:chpass@db/x",
         "HALTWATCH_TOPIC_PREFIX": "haltwatch", "PATH": "/usr/bin"},
    )
    discord_path = DISCORD.split("/", 3)[3]
    text = redact(f"errors: {discord_path} plainword R0UT1NGkey chpass; prefix haltwatch in /usr/bin")
    text += redact(f" POST {TELEGRAM}")
    for secret in (discord_path, "plainword", "R0UT1NGkey", "chpass", "AAbbCCdd", "-100200300"):
        assert secret not in text
    assert "prefix haltwatch in /usr/bin" in text, "settings that are not secrets are not registered"
    assert secrets.mask_setting("sasl_password", "plainword") == MASK
    assert secrets.mask_setting("pagerduty_routing_key", "R0UT1NGkey") == MASK
    assert secrets.mask_setting("prefix", "haltwatch") == "haltwatch"
