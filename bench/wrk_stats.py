"""Reads wrk's --latency output for scripts/bench.sh.

    wrk_stats.py merge sum|mean FILE...   one wrk-like summary of several runs: their summed
                                           (runs at once) or mean (runs one after another,
                                           equal durations) req/s, and the worst p50 and p99
    wrk_stats.py compare DIR ROUNDS       new-R / old-R / baseline-R.txt in DIR, R = 1..ROUNDS:
                                           each side's mean req/s, ratio to the baseline and p99,
                                           and new/old
"""

import re
import statistics
import sys


def ms(value):
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if value.endswith(unit):
            return float(value[: -len(unit)]) * factor
    raise ValueError(f"not a wrk duration: {value}")


def run(path):
    """(req/s, p50 ms, p99 ms) of one wrk run."""
    text = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p50, p99 = (ms(re.search(r"^\s+" + q + r"%\s+(\S+)", text, re.M).group(1)) for q in ("50", "99"))
    return rps, p50, p99


def merge(how, paths):
    runs = [run(p) for p in paths]
    rps = sum(r[0] for r in runs)
    if how == "mean":
        rps /= len(runs)
    print(f"Requests/sec: {rps:.2f}")
    print(f"     50%  {max(r[1] for r in runs):.2f}ms")
    print(f"     99%  {max(r[2] for r in runs):.2f}ms")


def compare(work, rounds):
    new, old, base = ([run(f"{work}/{side}-{r}.txt") for r in range(1, rounds + 1)] for side in ("new", "old", "baseline"))
    mean = statistics.fmean
    for name, runs in (("new", new), ("old", old)):
        ratios = [x[0] / b[0] for x, b in zip(runs, base)]
        p99 = mean(x[2] for x in runs)
        print(f"{name}: mean {mean(x[0] for x in runs):.0f} req/s, ratio to baseline {mean(ratios):.3f} "
              f"(rounds {min(ratios):.3f}..{max(ratios):.3f}), p99 {p99:.2f} ms "
              f"= {p99 / mean(b[2] for b in base):.2f}x the baseline's")
    pairs = " ".join(f"{n[0] / o[0]:.2f}" for n, o in zip(new, old))
    print(f"new/old req/s: {mean(x[0] for x in new) / mean(x[0] for x in old):.3f} (per round {pairs})")


if __name__ == "__main__":
    if sys.argv[1] == "merge":
        merge(sys.argv[2], sys.argv[3:])
    else:
        compare(sys.argv[2], int(sys.argv[3]))
