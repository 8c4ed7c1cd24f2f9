"""The test servers' fixed ports: every pytest-xdist worker its own, none in the kernel's ephemeral range."""

from __future__ import annotations

from tests import ports


def _ports(worker: int) -> set[int]:
    base = ports.port_base({"PYTEST_XDIST_WORKER": f"gw{worker}"})
    offsets = (92, 93, -455, -454, 0, -877, 192, 193, 100, 101)  # each server's port and its neighbour's
    return {base + o for o in offsets}


def test_workers_never_share_a_port_and_stay_below_the_ephemeral_range() -> None:
    seen: set[int] = set()
    for worker in range(8):
        mine = _ports(worker)
        assert not mine & seen, f"gw{worker} collides with an earlier worker"
        assert max(mine) < 32768 and min(mine) > 1024
        seen |= mine


def test_without_xdist_the_base_is_the_configured_one() -> None:
    assert ports.port_base({}) == 29000
    assert ports.port_base({"HALTWATCH_TEST_PORT_BASE": "40000", "PYTEST_XDIST_WORKER": "gw1"}) == 38000
