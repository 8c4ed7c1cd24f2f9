"""Resident memory of detector state for many exchanges and chains: ``python -m bench.detector_memory``.

Builds 1,000 exchanges x 10 chains of warm state in one :class:`OutageDetector` by feeding it a day of
synthetic heads and withdrawals (every hour of the day seen, so seasonal bins are populated), then prints the
process's resident memory before and after, and the size of the serialised state the worker keeps in its
Faust table. This is the pure detector in a plain process, not a whole Faust worker: the worker adds its
Kafka clients and web server on top (measure with ``ps`` on a running worker).
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import time

import orjson

from schemas.records import ChainHead, Direction, TransferEvent
from streams.detection import DetectionPolicy, ManualClock, OutageDetector


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--exchanges", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=10)
    parser.add_argument("--hours", type=int, default=25, help="chain time to play (one head per chain per minute)")
    args = parser.parse_args()
    rng = random.Random(1)
    gc.collect()
    before = rss_mb()
    detector = OutageDetector(DetectionPolicy(), ManualClock(0))
    chains = [f"chain{i}" for i in range(args.chains)]
    exchanges = [f"exchange{i:04d}" for i in range(args.exchanges)]
    t0 = 1_700_000_000 - 1_700_000_000 % 86_400
    started = time.perf_counter()
    events = 0
    for minute in range(args.hours * 60):
        t = t0 + 60 * minute
        for c, chain in enumerate(chains):
            number = minute + 1
            for e, exchange in enumerate(exchanges):
                if (e + c + minute) % 3 == 0:  # every (exchange, chain) pays about once every 3 minutes
                    detector.on_transfer(TransferEvent(
                        chain=chain, block_number=number, block_hash=f"0x{c}-{number}", block_time=t,
                        tx_hash=f"0x{e}-{c}-{minute}", log_index=0, asset="native", amount=str(rng.randrange(10**18)),
                        decimals=18, from_address="0xhot", to_address="0xuser", exchange=exchange,
                        direction=Direction.WITHDRAWAL,
                    ))
                    events += 1
            detector.on_head(ChainHead(chain, number, f"0x{c}-{number}", f"0x{c}-{number - 1}", t, float(t)))
            events += 1
    elapsed = time.perf_counter() - started
    gc.collect()
    after = rss_mb()
    states = sum(len(ex.chains) for ex in detector.view.values())
    serialised = sum(len(orjson.dumps(detector.export(name))) for name in detector.view)
    warm = sum(1 for ex in detector.view.values() for c in ex.chains.values() if c.warm)
    print(f"{args.exchanges} exchanges x {args.chains} chains = {states} (exchange, chain) states, {warm} warm; "
          f"{events:,} events over {args.hours} h of chain time in {elapsed:.1f} s ({events / elapsed:,.0f} events/s)")
    print(f"resident memory: {before:.0f} MB before, {after:.0f} MB after: {after - before:.0f} MB of detector state "
          f"({(after - before) * 1024 / max(states, 1):.1f} KB per state)")
    print(f"serialised state (the worker's Faust table values): {serialised / 1e6:.0f} MB in total, "
          f"{serialised / max(len(detector.view), 1) / 1024:.0f} KB per exchange")


if __name__ == "__main__":
    main()
