#!/usr/bin/env python3
"""scipy's linear_sum_assignment on the cost matrices dumped by detr-train's matcher benchmark.

    cargo run --release -p detr-train --example bench_matcher   # calls this script itself
    python tools/bench_matcher.py --costs /tmp/detr_bench_matcher_costs.json

Times, like the Rust side's `solve (host, all)` line, the solve of every (layer, image) block
`[Q, counts[b]]` of the `[L, B, Q, T]` cost array, and checks that scipy's assignments equal the
Rust matcher's (they may legitimately differ only on exact ties).
"""
import argparse
import json
import sys
import time

try:
    import numpy as np
    from scipy.optimize import linear_sum_assignment
except ImportError as e:  # scipy is optional
    print(f"scipy/numpy not installed ({e}); skipping the scipy comparison")
    sys.exit(0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--costs", required=True)
    parser.add_argument("--iters", type=int, default=None)
    args = parser.parse_args()
    with open(args.costs) as f:
        dump = json.load(f)
    layers, batch, queries, width = dump["shape"]
    counts = dump["counts"]
    iters = args.iters or dump.get("iters", 50)
    costs = np.asarray(dump["costs"], dtype=np.float32).reshape(layers, batch, queries, width)
    blocks = [
        (l, b, np.ascontiguousarray(costs[l, b, :, : counts[b]]))
        for l in range(layers)
        for b in range(batch)
    ]

    def solve_all():
        return [(l, b, linear_sum_assignment(c)) for l, b, c in blocks if c.shape[1] > 0]

    for _ in range(min(iters, 5)):
        solve_all()
    samples = []
    for _ in range(iters):
        t = time.perf_counter()
        result = solve_all()
        samples.append(time.perf_counter() - t)
    samples.sort()
    median = samples[len(samples) // 2] * 1e6
    mean = sum(samples) / len(samples) * 1e6
    print(f"{'scipy solve (all)':<22} median {median:>9.1f} µs   mean {mean:>9.1f} µs")

    mismatches = 0
    for l, b, (rows, cols) in result:
        want = dump["matches"][l][b]
        if list(map(int, rows)) != want[0] or list(map(int, cols)) != want[1]:
            mismatches += 1
    total = len(result)
    print(f"assignments identical to the Rust matcher: {total - mismatches}/{total}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
