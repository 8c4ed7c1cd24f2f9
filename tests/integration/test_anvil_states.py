"""anvil's on-disk block states stay in the project's run folder and are removed with the instance.

anvil moves old block states to disk once it holds a few hundred in memory. By default it writes them under
``~/.foundry/anvil/tmp`` and removes them only on a clean exit, so every killed test node used to leave
gigabytes behind in the user's home.
"""

from __future__ import annotations

import os
import signal
import urllib.request
from pathlib import Path

import orjson

from haltwatch.local import REPO, infra
from tests.conftest import ANVIL_ENV

# One port above the session's anvil, so this test's instance is its own.
PORT = int(ANVIL_ENV["ANVIL_PORT"]) + 1
ENV = {"ANVIL_PORT": str(PORT)}
RUN = Path(os.environ.get("HALTWATCH_CACHE", REPO / ".cache")).resolve() / "run"
STATES = RUN / f"anvil-{PORT}-states"


def _mine(blocks: int) -> None:
    body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "anvil_mine", "params": [hex(blocks)]})
    request = urllib.request.Request(
        f"http://127.0.0.1:{PORT}", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert "error" not in orjson.loads(response.read())


def test_persisted_states_are_ours_and_go_with_the_instance() -> None:
    infra("anvil", "start", ENV)
    try:
        _mine(1024)
        assert STATES.is_dir() and any(STATES.iterdir()), "anvil persisted no state under the run folder"
    finally:
        infra("anvil", "stop", ENV)
    assert not STATES.exists()


def test_states_left_by_a_killed_instance_are_removed_on_the_next_start() -> None:
    infra("anvil", "start", ENV)
    try:
        _mine(1024)
        os.kill(int((RUN / f"anvil-{PORT}.pid").read_text()), signal.SIGKILL)
        left = set(STATES.iterdir())
        assert left, "anvil persisted no state under the run folder"
        infra("anvil", "start", ENV)
        assert not STATES.exists() or not left & set(STATES.iterdir())
    finally:
        infra("anvil", "stop", ENV)
    assert not STATES.exists()
