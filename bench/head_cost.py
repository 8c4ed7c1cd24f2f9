"""What one chain head costs the detector, against the number of exchanges on its chain: ``python -m bench.head_cost``.

For each count of exchanges, one detector follows one chain of 12 s blocks on which every exchange pays out
with probability ``--pay`` per block (``--warm-blocks`` blocks to warm up, untimed), then ``--blocks`` more
blocks whose heads are timed (CPU time of ``on_head`` alone; the block's transfers are fed untimed before it).
The timed blocks span whole hours of chain time (300 blocks an hour), so the hour boundaries, where every
exchange on the chain catches up at the new hour's rate, are in the figures. Prints the median and the mean
CPU time per head (the mean carries the hour boundaries) and, with ``--plot FILE``, draws both.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

from schemas.records import ChainHead, Direction, TransferEvent
from streams.detection import DetectionPolicy, ManualClock, OutageDetector

T0 = 1_767_225_600
BLOCK_S = 12


def head_costs(exchanges: int, warm_blocks: int, blocks: int, pay: float, seed: int = 1) -> list[float]:
    """CPU seconds of each timed head."""
    rng = random.Random(seed)
    detector = OutageDetector(DetectionPolicy(), ManualClock(0.0))
    names = [f"exchange{e:04d}" for e in range(exchanges)]
    spent: list[float] = []
    for number in range(1, warm_blocks + blocks + 1):
        t = T0 + BLOCK_S * number
        for index, name in enumerate(names):
            if rng.random() < pay:
                detector.on_transfer(TransferEvent(
                    "chain", number, f"0x{number:x}", t, f"0x{number:x}-{index}", -1, "native", "1", 18,
                    f"0xhot{index}", "0xuser", name, Direction.WITHDRAWAL))
        head = ChainHead("chain", number, f"0x{number:x}", f"0x{number - 1:x}", t, float(t))
        started = time.process_time()
        detector.on_head(head)
        if number > warm_blocks:
            spent.append(time.process_time() - started)
    warm = sum(1 for ex in detector.view.values() for c in ex.chains.values() if c.warm)
    assert warm == exchanges, f"only {warm} of {exchanges} exchanges warmed up: raise --warm-blocks"
    return spent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.head_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--exchanges", default="10,30,100,300,1000", help="comma-separated counts")
    parser.add_argument("--warm-blocks", type=int, default=400, help="untimed blocks first (warm-up: 50 payouts, 1 h)")
    parser.add_argument("--blocks", type=int, default=600, help="timed blocks (600: two hours of chain time)")
    parser.add_argument("--pay", type=float, default=0.3, help="chance that an exchange pays out in a block")
    parser.add_argument("--plot", type=Path, default=None, help="write the curve to this PNG")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.exchanges.split(",")]
    rows = []
    print(f"{'exchanges':>9} {'median µs per head':>19} {'mean µs per head':>17} {'slowest head, ms':>17}")
    for n in counts:
        costs = head_costs(n, args.warm_blocks, args.blocks, args.pay)
        median, mean = statistics.median(costs), statistics.fmean(costs)
        rows.append((n, median, mean))
        print(f"{n:>9} {median * 1e6:>19,.1f} {mean * 1e6:>17,.1f} {max(costs) * 1e3:>17.2f}", flush=True)
    first, last = rows[0], rows[-1]
    print(f"from {first[0]} to {last[0]} exchanges the median head grows {last[1] / first[1]:.1f}x and the mean "
          f"{last[2] / first[2]:.1f}x (flat would be 1x; linear {last[0] / first[0]:.0f}x)")
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.5, 3.8))
        ax.loglog([n for n, _, _ in rows], [m * 1e6 for _, m, _ in rows], "o-", label="median head")
        ax.loglog([n for n, _, _ in rows], [m * 1e6 for _, _, m in rows], "s-", label="mean head (hour boundaries in)")
        ax.loglog([n for n, _, _ in rows], [first[1] * 1e6 * n / first[0] for n, _, _ in rows], ":", color="grey",
                  label="linear in the exchanges")
        ax.loglog([n for n, _, _ in rows], [2 * first[2] * 1e6] * len(rows), "--", color="grey",
                  label=f"2x the {first[0]}-exchange mean")
        ax.set_xlabel("exchanges on the chain")
        ax.set_ylabel("µs of CPU per head")
        ax.set_title("Detector cost of one chain head (bench/head_cost.py)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
