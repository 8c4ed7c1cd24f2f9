"""Generate a detection scenario: ``events.jsonl.gz`` as the transfers topic would carry it, and ``truth.json``.

    python -m bench.detection.generate --out DIR --days N --seed S [--exchanges K] [--quiet] [--traffic bursty]

Records are in global block-time order, each block's transfers before its head, exactly the order the
live pipeline delivers (a head means "all of this block's transfers were published"). Counts are drawn per
block with numpy from the intensities of :mod:`.model` (vectorised: tens of millions of blocks stay cheap);
only the JSON lines are built in Python. The same seed gives byte-identical files.
"""

from __future__ import annotations

import argparse
import gzip
import heapq
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
import orjson

from bench.detection.model import Blocks, FloatArray, IntArray, Model
from bench.detection.scenario import EXCHANGES, TRAFFIC, Config, build_truth
from bench.detection.writer import BLOCK, DEPOSIT, INTERNAL, WITHDRAWAL, Writer, block_hex

QUIET_DAYS = 9.0
"""Quiet run default: 12 exchanges x 8 post-warm-up days = 96 exchange-days of false-alarm exposure."""
INCIDENT_DAYS = 4.0


@dataclass(slots=True)
class ChainTraffic:
    """One chain's blocks and its transfers per block, sorted by block."""

    chain: str
    blocks: Blocks
    block_index: list[int]
    exchange_index: list[int]
    direction: list[int]
    count: list[int]


def incident_factor(truth: Mapping[str, Any], exchange: str, chain: str, times: IntArray) -> FloatArray:
    """Multiplier of the normal payout rate: 0 while halted, 0.1 while degraded, 1 otherwise."""
    factor: FloatArray = np.ones(len(times), dtype=np.float64)
    for incident in truth["incidents"]:
        for member in incident["members"]:
            if member["exchange"] == exchange and chain in member["chains"]:
                inside = (times >= member["start"]) & (times < member["end"])
                factor[inside] = float(incident["factor"])
    return factor


def withdrawal_counts(model: Model, exchange: str, chain: str, blocks: Blocks, factor: FloatArray,
                      rng: np.random.Generator) -> IntArray:
    """Withdrawals per block: Poisson, or compound Poisson batches spread over consecutive blocks."""
    params = model.chain_params(exchange, chain)
    mean = model.batch_rate(exchange, chain, blocks.times) * model.interval(chain) * factor
    starts = rng.poisson(mean)
    batch_mean = float(params.get("batch_mean", 1.0))
    if batch_mean <= 1.0:
        counts: IntArray = starts.astype(np.int64)
    else:
        first = np.repeat(np.arange(len(starts), dtype=np.int64), starts)
        sizes = 1 + rng.poisson(batch_mean - 1.0, size=len(first))
        spread = rng.integers(1, int(params.get("spread_blocks", 1)) + 1, size=len(first))
        offset = (rng.random(int(sizes.sum())) * np.repeat(spread, sizes)).astype(np.int64)
        item_block = np.repeat(first, sizes) + offset
        counts = np.bincount(np.minimum(item_block, len(starts) - 1), minlength=len(starts)).astype(np.int64)
    counts[factor == 0.0] = 0  # the tail of a batch that began just before a halt is not paid either
    counts[~blocks.published] = 0
    return counts


def chain_traffic(model: Model, chain: str, names: list[str], rng: np.random.Generator) -> ChainTraffic:
    blocks = model.blocks(chain)
    interval = model.interval(chain)
    parts: list[tuple[IntArray, int, int, IntArray]] = []
    for ex_i, exchange in enumerate(names):
        if chain not in model.exchanges[exchange]["chains"]:
            continue
        params = model.chain_params(exchange, chain)
        factor = incident_factor(model.truth, exchange, chain, blocks.times)
        per_direction = {
            WITHDRAWAL: withdrawal_counts(model, exchange, chain, blocks, factor, rng),
            DEPOSIT: rng.poisson(model.rate(exchange, chain, blocks.times) * interval * float(params["deposit_ratio"])),
            INTERNAL: rng.poisson(float(params["internal_per_hour"]) / 3600 * interval, size=len(blocks.times)),
        }
        for direction, drawn in per_direction.items():
            counts = np.where(blocks.published, drawn, 0)
            idx = np.flatnonzero(counts)
            parts.append((idx.astype(np.int64), ex_i, direction, counts[idx].astype(np.int64)))
    if parts:
        block_index = np.concatenate([p[0] for p in parts])
        exchange_index = np.concatenate([np.full(len(p[0]), p[1], dtype=np.int64) for p in parts])
        directions = np.concatenate([np.full(len(p[0]), p[2], dtype=np.int64) for p in parts])
        count = np.concatenate([p[3] for p in parts])
        order = np.argsort(block_index, kind="stable")
        return ChainTraffic(chain, blocks, block_index[order].tolist(), exchange_index[order].tolist(),
                            directions[order].tolist(), count[order].tolist())
    return ChainTraffic(chain, blocks, [], [], [], [])


def _block_order(traffic: list[ChainTraffic]) -> Iterator[tuple[int, int, int]]:
    """(block time, chain rank, block index) over all chains in global block-time order."""
    streams = [zip(t.blocks.times.tolist(), repeat(rank), range(len(t.blocks.times)), strict=False)
               for rank, t in enumerate(traffic)]
    return heapq.merge(*streams)


def write_events(writer: Writer, traffic: list[ChainTraffic], names: list[str]) -> None:
    """Every block of every chain in time order: its transfers, then its head unless the feed lost it."""
    pointers = [0] * len(traffic)
    numbers = [t.blocks.numbers.tolist() for t in traffic]
    published = [t.blocks.published.tolist() for t in traffic]
    for t, rank, i in _block_order(traffic):
        ct = traffic[rank]
        number = numbers[rank][i]
        block_hash = block_hex(writer.seed, ct.chain, number)
        p = pointers[rank]
        log_index = 0
        if p < len(ct.block_index) and ct.block_index[p] == i:
            prefix = BLOCK % (ct.chain, number, block_hash, t)
            while p < len(ct.block_index) and ct.block_index[p] == i:
                exchange = names[ct.exchange_index[p]]
                for _ in range(ct.count[p]):
                    log_index = writer.transfer(prefix, ct.chain, exchange, ct.direction[p], log_index)
                p += 1
        pointers[rank] = p
        if published[rank][i]:  # hashes are a function of the height, so parents chain by construction
            writer.head(ct.chain, number, block_hash, block_hex(writer.seed, ct.chain, number - 1), t)


def generate(out_dir: Path, config: Config) -> dict[str, Any]:
    """Write ``events.jsonl.gz`` and ``truth.json`` into ``out_dir``; returns the truth."""
    truth = build_truth(config)
    model = Model(truth)
    names = list(truth["exchanges"])
    rng = np.random.default_rng([config.seed, 1])
    traffic = [chain_traffic(model, chain, names, rng) for chain in truth["chains"]]
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "events.jsonl.gz").open("wb") as raw, \
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=1, mtime=0) as out:
        writer = Writer(cast(BinaryIO, out), truth, config.seed)
        try:
            write_events(writer, traffic, names)
        finally:
            writer.close()
    stats = writer.stats
    truth["stats"] = {"records": stats.records, "heads": stats.heads, "transfers": dict(stats.transfers),
                      "withdrawals_by_exchange": dict(stats.withdrawals)}
    (out_dir / "truth.json").write_bytes(orjson.dumps(truth, option=orjson.OPT_INDENT_2))
    return truth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.detection.generate", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for events.jsonl.gz and truth.json")
    parser.add_argument("--days", type=float, default=None,
                        help=f"chain days to simulate (default {INCIDENT_DAYS:g}, or {QUIET_DAYS:g} with --quiet)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--exchanges", type=int, default=len(EXCHANGES), help="number of exchanges")
    parser.add_argument("--quiet", action="store_true", help="no incidents, no stalls: false-alarm measurement")
    parser.add_argument("--traffic", choices=TRAFFIC, default="smooth",
                        help="smooth: seasonality and slow drift; bursty: plus short-timescale swings, volatility "
                        "episodes, regime shifts, manual batches and an added hot wallet (bench/detection/bursty.py)")
    args = parser.parse_args(argv)
    days = args.days if args.days is not None else (QUIET_DAYS if args.quiet else INCIDENT_DAYS)
    config = Config(days=days, seed=args.seed, exchanges=args.exchanges, quiet=args.quiet, traffic=args.traffic)
    started = time.perf_counter()
    try:
        truth = generate(args.out, config)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stats = truth["stats"]
    seconds = time.perf_counter() - started
    print(f"wrote {args.out}/events.jsonl.gz: {stats['records']:,} records ({stats['heads']:,} heads, "
          f"{sum(stats['transfers'].values()):,} transfers) in {seconds:.1f} s ({stats['records'] / seconds:,.0f} "
          f"records/s); "
          f"{len(truth['incidents'])} incidents, {len(truth['chain_events'])} chain events")
    return 0


if __name__ == "__main__":
    sys.exit(main())
