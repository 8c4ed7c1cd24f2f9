"""Hot-wallet discovery: precision, recall, blocks read per second, and how soon a rotation is proposed.

    .venv/bin/python -m bench.label_discovery [--seeds 3] [--sweep-seeds 10] [--blocks 1500]

Three measurements, all on the simulated exchange of :mod:`bench.exchange_sim` (two hot wallets to find,
three decoys to refuse, the cold wallet the only one known):

- **through the readers**: ``haltwatch labels discover``'s :class:`~connectors.hot_wallets.discovery.Discovery`
  reads each family's chain from a local node (anvil, started here with ``infra/anvil.sh``; the Solana,
  Bitcoin and Tron protocol servers of ``tests/nodes`` on loopback) for ``--seeds`` scripts each, and the
  precision, recall and blocks/s are printed per family. The protocol servers run in this process (a thread),
  so they share its interpreter: blocks/s is a floor for a real node.
- **payout rate sweep**: the same scoring fed the scripts directly (no node: the readers are checked above to
  give the same verdicts), at payout rates from 2.5 per block down to one per 50 blocks (12 s blocks).
- **rotation**: the live rotation watch on scripts where the first hot wallet hands its payouts to a new one;
  minutes of chain time from the new wallet's first payout to its suggestion.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.exchange_sim import ExchangeSim, address_for, label_file, simulate
from bench.sim_anvil import play_on_anvil
from connectors.family import ChainFamily
from connectors.hot_wallets.discovery import Discovery
from connectors.hot_wallets.evidence import EvidenceBook, HotWalletRule
from connectors.hot_wallets.sources import SourceSettings
from connectors.labels import LabelRegistry
from connectors.rotation import RotationWatch
from haltwatch.local import free_port, infra

FUNDING = {"evm": 50 * 10**18, "solana": 500 * 10**9, "bitcoin": 10 * 10**8, "tron": 100_000 * 10**6}
CHAIN = {"evm": "ethereum", "solana": "solana", "bitcoin": "bitcoin", "tron": "tron"}
START = 1_750_000_000


def registry_for(family: str, work: Path) -> LabelRegistry:
    path = work / f"{family}.toml"
    path.write_text(label_file(family, CHAIN[family]))
    return LabelRegistry.from_files([path])


def score(proposed: set[str], sim: ExchangeSim, family: str) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of proposed addresses against the script."""
    truth = {address_for(family, h) for h in sim.hot}
    return len(proposed & truth), len(proposed - truth), len(truth - proposed)


def through_readers(family: str, sim: ExchangeSim, url_of: Callable[[ExchangeSim], Any], work: Path
                    ) -> tuple[tuple[int, int, int], float, int]:
    """Run a discovery over the node the callable starts; returns (score, blocks/s, blocks)."""
    with url_of(sim) as (url, first, last):
        settings = [SourceSettings(CHAIN[family], url, prefetch=8)]
        discovery = Discovery(ChainFamily(family), settings, registry_for(family, work),
                              {"native": FUNDING[family]}, HotWalletRule(), None)
        result = asyncio.run(discovery.run(first, last))
    return score({v.evidence.address for v in result.hot}, sim, family), result.blocks_per_s, result.blocks


class _Served:
    """A scripted protocol server as a context manager yielding (url, first, last)."""

    def __init__(self, family: str, sim: ExchangeSim) -> None:
        from tests.nodes.scripted import ScriptedEsplora, ScriptedSolana, ScriptedTron

        kinds: dict[str, Any] = {"solana": ScriptedSolana, "bitcoin": ScriptedEsplora, "tron": ScriptedTron}
        self.family = family
        self.node = kinds[family](sim)
        self.blocks = len(sim.blocks)

    def __enter__(self) -> tuple[str, int, int]:
        node = self.node.__enter__()
        if self.family == "solana":
            node.produce(self.blocks + self.blocks // 6 + 10)
            return node.url, node.first_slot, node.finalized
        node.produce(self.blocks)
        return node.url + ("/api" if self.family == "bitcoin" else ""), node.first, node.tip

    def __exit__(self, *exc: object) -> None:
        self.node.__exit__(*exc)


class _OnAnvil:
    def __init__(self, ws_url: str, sim: ExchangeSim) -> None:
        self.ws_url, self.sim = ws_url, sim

    def __enter__(self) -> tuple[str, int, int]:
        first, last = asyncio.run(play_on_anvil(self.ws_url, self.sim))
        return self.ws_url, first, last

    def __exit__(self, *exc: object) -> None:
        return None


def sweep(rate: float, seeds: int, blocks: int, work: Path) -> tuple[tuple[int, int, int], Counter[str]]:
    """Precision/recall counts of the scoring fed the scripts directly, at ``rate`` payouts per block, and the
    checks the missed hot wallets failed."""
    total = [0, 0, 0]
    missed: Counter[str] = Counter()
    registry = registry_for("evm", work)
    for seed in range(seeds):
        sim = simulate(FUNDING["evm"], blocks=blocks, payouts_per_block=rate, seed=100 + seed)
        book = EvidenceBook("ethereum", lambda: registry, {"native": FUNDING["evm"]})
        for i, moves in enumerate(sim.blocks):
            for m in moves:
                book.observe(START + i * 12, "t", "native", m.amount, address_for("evm", m.sender),
                             address_for("evm", m.recipient))
        verdicts = book.verdicts()
        found = score({v.evidence.address for v in verdicts if v.hot}, sim, "evm")
        total = [a + b for a, b in zip(total, found, strict=True)]
        hot = {address_for("evm", h) for h in sim.hot}
        missed.update(name for v in verdicts if v.evidence.address in hot and not v.hot for name in v.failed)
    return (total[0], total[1], total[2]), missed


def scoring_cost(blocks: int, work: Path) -> float:
    """Microseconds the evidence book takes per transfer (addresses made beforehand), best of 3."""
    registry = registry_for("evm", work)
    sim = simulate(FUNDING["evm"], blocks=blocks, payouts_per_block=2.5)
    moves = [(START + i * 12, m.amount, address_for("evm", m.sender), address_for("evm", m.recipient))
             for i, block in enumerate(sim.blocks) for m in block]
    best = float("inf")
    for _ in range(3):
        book = EvidenceBook("ethereum", lambda: registry, {"native": FUNDING["evm"]})
        started = time.perf_counter()
        for when, amount, sender, recipient in moves:
            book.observe(when, "t", "native", amount, sender, recipient)
        best = min(best, time.perf_counter() - started)
    return best / len(moves) * 1e6


def rotation_delays(seeds: int, blocks: int, rate: float, work: Path) -> list[float | None]:
    """Minutes from the new hot wallet's first payout to its suggestion (None: never suggested)."""
    path = work / "known.toml"
    path.write_text(label_file("evm", "ethereum") + "".join(
        f'\n[[wallet]]\nexchange = "simex"\nchain = "ethereum"\naddress = "{address_for("evm", h)}"\n'
        'role = "hot"\nsource = "known"\n' for h in ("hot-1", "hot-2")))
    registry = LabelRegistry.from_files([path])
    delays: list[float | None] = []
    for seed in range(seeds):
        sim = simulate(FUNDING["evm"], blocks=blocks, payouts_per_block=rate, rotation_at=blocks // 2,
                       seed=200 + seed)
        watch = RotationWatch("ethereum", lambda: registry, {"native": FUNDING["evm"]})
        new = address_for("evm", "hot-3")
        found: float | None = None
        for i, moves in enumerate(sim.blocks):
            for m in moves:
                s = watch.observe(START + i * 12, "t", "native", m.amount, address_for("evm", m.sender),
                                  address_for("evm", m.recipient))
                if s is not None and s.address == new and found is None:
                    first = sim.first_payout_of_new_hot or 0
                    found = (i - first) * 12 / 60
        delays.append(found)
    return delays


def ratio(tp: int, fp: int, fn: int) -> str:
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    return f"precision {precision:.2f} ({tp}/{tp + fp})  recall {recall:.2f} ({tp}/{tp + fn})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.label_discovery", description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="scripts per family read through the readers")
    parser.add_argument("--sweep-seeds", type=int, default=10, help="scripts per payout rate in the sweep")
    parser.add_argument("--blocks", type=int, default=1_500, help="blocks per script (12 s each)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="haltwatch-discovery-"))
    anvil_env = {"ANVIL_PORT": str(free_port()), "ANVIL_ARGS": "--no-mining"}
    print(f"through the readers: {args.seeds} scripts of {args.blocks} blocks per family", file=sys.stderr)
    infra("anvil", "start", anvil_env)
    try:
        ws_url = f"ws://127.0.0.1:{anvil_env['ANVIL_PORT']}"
        for family in ("evm", "solana", "bitcoin", "tron"):
            counts, speeds, blocks = [0, 0, 0], [], 0
            for seed in range(args.seeds):
                sim = simulate(FUNDING[family], blocks=args.blocks, seed=seed + 1)
                served: Callable[[ExchangeSim], Any] = (
                    (lambda s: _OnAnvil(ws_url, s)) if family == "evm" else (lambda s, f=family: _Served(f, s)))
                found, speed, read = through_readers(family, sim, served, work)
                counts = [a + b for a, b in zip(counts, found, strict=True)]
                speeds.append(speed)
                blocks += read
            print(f"  {family:<8} {ratio(*counts)}  {statistics.median(speeds):7.0f} blocks/s (median of "
                  f"{args.seeds} runs, {blocks} blocks read)")
    finally:
        infra("anvil", "stop", anvil_env)
    print(f"payout rate sweep: {args.sweep_seeds} scripts per rate, the scoring fed directly", file=sys.stderr)
    for rate in (2.5, 0.5, 0.1, 0.05, 0.02):
        counts, missed = sweep(rate, args.sweep_seeds, args.blocks, work)
        why = f"  missed ones failed: {dict(missed)}" if missed else ""
        print(f"  {rate:>4} payouts/block ({rate * 5:5.2f}/min)  {ratio(*counts)}{why}")
    print(f"scoring: {scoring_cost(args.blocks, work):.1f} µs per transfer (evidence book alone)")
    print("rotation: minutes from the new hot wallet's first payout to its suggestion", file=sys.stderr)
    for rate in (2.5, 0.5, 0.1):
        delays = rotation_delays(args.sweep_seeds, args.blocks, rate, work)
        seen = sorted(d for d in delays if d is not None)
        shown = (f"median {statistics.median(seen):.1f}, max {max(seen):.1f} min" if seen else "never")
        print(f"  {rate:>4} payouts/block: proposed in {len(seen)}/{len(delays)} scripts, {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
