"""What one chain head costs the detector, against the number of exchanges on its chain: ``python -m bench.head_cost``.

For each count of exchanges, one detector follows one chain of 12 s blocks on which every exchange pays out
with probability ``--pay`` per block (``--warm-blocks`` blocks to warm up, untimed), then ``--blocks`` more
blocks whose heads are timed (CPU time of ``on_head`` alone; the block's transfers are fed untimed before it).
Prints the CPU time per head and per (head, exchange) pair, and with ``--plot FILE`` draws both.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

from schemas.records import ChainHead, Direction, TransferEvent
from streams.detection import DetectionPolicy, ManualClock, OutageDetector

T0 = 1_767_225_600


def head_cost(exchanges: int, warm_blocks: int, blocks: int, pay: float, seed: int = 1) -> float:
    """CPU seconds per head over the timed blocks."""
    rng = random.Random(seed)
    detector = OutageDetector(DetectionPolicy(), ManualClock(0.0))
    names = [f"exchange{e:04d}" for e in range(exchanges)]
    spent = 0.0
    for number in range(1, warm_blocks + blocks + 1):
        t = T0 + 12 * number
        for index, name in enumerate(names):
            if rng.random() < pay:
                detector.on_transfer(TransferEvent(
                    "chain", number, f"0x{number:x}", t, f"0x{number:x}-{index}", -1, "native", "1", 18,
                    f"0xhot{index}", "0xuser", name, Direction.WITHDRAWAL))
        head = ChainHead("chain", number, f"0x{number:x}", f"0x{number - 1:x}", t, float(t))
        started = time.process_time()
        detector.on_head(head)
        if number > warm_blocks:
            spent += time.process_time() - started
    warm = sum(1 for ex in detector.view.values() for c in ex.chains.values() if c.warm)
    assert warm == exchanges, f"only {warm} of {exchanges} exchanges warmed up: raise --warm-blocks"
    return spent / blocks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.head_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--exchanges", default="10,30,100,300,1000", help="comma-separated counts")
    parser.add_argument("--warm-blocks", type=int, default=400, help="untimed blocks first (warm-up: 50 payouts, 1 h)")
    parser.add_argument("--blocks", type=int, default=100, help="timed blocks")
    parser.add_argument("--pay", type=float, default=0.3, help="chance that an exchange pays out in a block")
    parser.add_argument("--plot", type=Path, default=None, help="write the curve to this PNG")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.exchanges.split(",")]
    rows = []
    print(f"{'exchanges':>9} {'µs per head':>12} {'µs per head and exchange':>25}")
    for n in counts:
        per_head = head_cost(n, args.warm_blocks, args.blocks, args.pay)
        rows.append((n, per_head))
        print(f"{n:>9} {per_head * 1e6:>12,.0f} {per_head / n * 1e6:>25.2f}", flush=True)
    first, last = rows[0], rows[-1]
    print(f"time per head grows {last[1] / first[1]:.0f}x from {first[0]} to {last[0]} exchanges "
          f"(flat would be 1x; linear {last[0] / first[0]:.0f}x)")
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.5, 3.8))
        ax.loglog([n for n, _ in rows], [s * 1e6 for _, s in rows], "o-", label="CPU per head")
        ax.loglog([n for n, _ in rows], [first[1] * 1e6] * len(rows), "--", color="grey",
                  label=f"flat (the {first[0]}-exchange cost)")
        ax.set_xlabel("exchanges on the chain")
        ax.set_ylabel("µs of CPU per head")
        ax.set_title("Detector cost of one chain head (bench/head_cost.py)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
