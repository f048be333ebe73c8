"""Every speed table in one run: the functional core, the fastai losses and epochs, the callback.

    PYTHONPATH=. python benchmarks/bench_all.py           # the full sizes (several minutes)
    PYTHONPATH=. python benchmarks/bench_all.py --quick   # smaller sizes, the same repetitions

It runs `bench_functional.py`, `bench_epoch.py` and `bench_callback.py` one after the other, in one process,
under one torch thread count (`--threads`, default 1), and prints their tables in that order.
"""
from __future__ import annotations

import argparse
import time

import bench_callback
import bench_epoch
import bench_functional


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    quick = ["--quick"] if args.quick else []
    threads = ["--threads", str(args.threads)]
    t0 = time.perf_counter()
    bench_functional.main(quick + threads + ["--device", "all"])
    print("\n## fastai losses and epochs\n")
    bench_epoch.main(quick + threads)
    print(f"\n## AUROCCallback in an epoch ({args.threads} torch thread(s))\n")
    bench_callback.main(quick + threads)
    print(f"\n(all tables in {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
