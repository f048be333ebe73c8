"""Peak memory of exact and streaming AUROC, against scikit-learn and torchmetrics (CPU).

    python benchmarks/bench_memory.py            # binary N = 1e7; multiclass K = 100, N = 1e6
    python benchmarks/bench_memory.py --quick    # binary N = 1e6; multiclass K = 100, N = 1e5

Method: each cell runs in a fresh Python process (imports done, inputs built first), so no allocator
cache or earlier peak carries over. The process resets its peak resident set size (writing 5 to
/proc/self/clear_refs), then calls the contender once; the cell is the peak (VmHWM) minus the
resident size just before the call (VmRSS), from /proc/self/status: every temporary the call needs,
whoever allocates it (torch, numpy, scikit-learn), beyond the inputs. Linux only. Inputs: float32
logits with 10% positives (binary: (N, 2)); multiclass probabilities for scikit-learn, which
requires them (float32 (N, K), rows summing to 1), and the same logits for the others.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CONTENDERS = {
    "binary": ["fastai_aum auroc", "fastai_aum AUROC metric", "fastai_aum streaming 2**20 (batches of 65536)", "scikit-learn",
               "torchmetrics"],
    "multiclass": ["fastai_aum auroc", "fastai_aum AUROC metric (chunked)", "scikit-learn", "torchmetrics"],
}


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _inputs(kind: str, n: int, k: int):
    import torch
    g = torch.Generator().manual_seed(0)
    if kind == "binary":
        y = (torch.rand(n, generator=g) < 0.1).to(torch.uint8)
        z = torch.randn(n, 2, generator=g)
        z[:, 1] += y
        return z, y
    y = torch.randint(0, k, (n,), generator=g).to(torch.uint8)
    z = torch.randn(n, k, generator=g)
    z[torch.arange(n), y.long()] += 1.0
    return z, y


def _call(kind: str, name: str, z, y):
    """The function to measure, with every conversion it needs prepared outside it."""
    import torch
    if name == "fastai_aum auroc":
        from fastai_aum.functional import auroc
        return lambda: auroc(z, y).item()
    if name.startswith("fastai_aum AUROC metric"):
        from fastai_aum.metrics import AUROC, pass_auroc
        from fastai_aum.reading import Reading
        metric = AUROC()
        metric.reading = Reading(classes=list(range(z.shape[1])))
        return lambda: pass_auroc(metric, z, y)[0]
    if name.startswith("fastai_aum streaming"):
        from fastai_aum.functional import AUROCHistogram

        def stream():  # as the callback counts: batch by batch
            hist = AUROCHistogram(2 ** 20)
            for start in range(0, len(y), 2 ** 16):
                hist.update(z[start:start + 2 ** 16], y[start:start + 2 ** 16])
            value, bound = hist.compute()
            return value.item()
        return stream
    if name == "scikit-learn":
        from sklearn.metrics import roc_auc_score
        yn = y.numpy()
        if kind == "binary":
            s = (z[:, 1].double() - z[:, 0].double()).numpy()
            return lambda: roc_auc_score(yn, s)
        p = torch.softmax(z.double(), 1)
        p = (p / p.sum(1, keepdim=True)).float().numpy()
        del z
        return lambda: roc_auc_score(yn, p, multi_class="ovr", average="macro")
    if name == "torchmetrics":
        from torchmetrics.functional.classification import binary_auroc, multiclass_auroc
        if kind == "binary":
            s, t = z[:, 1] - z[:, 0], y.long()
            return lambda: binary_auroc(s, t, thresholds=None).item()
        t = y.long()
        return lambda: multiclass_auroc(z, t, num_classes=z.shape[1], average="macro", thresholds=None).item()
    raise ValueError(name)


def _child(kind: str, name: str, n: int, k: int) -> None:
    import torch
    torch.set_num_threads(1)
    z, y = _inputs(kind, n, k)
    fn = _call(kind, name, z, y)
    del z
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident set size
    before = _status("VmRSS")
    t0 = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - t0
    print(json.dumps({"peak": _status("VmHWM") - before, "seconds": seconds, "value": float(value)}))


def measure(kind: str, name: str, n: int, k: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, name, str(n), str(k)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, name, n, k = args.child
        return _child(kind, name, int(n), int(k))
    import torch
    sizes = {"binary": (10 ** 6 if args.quick else 10 ** 7, 2), "multiclass": (10 ** 5 if args.quick else 10 ** 6, 100)}
    print(f"torch {torch.__version__}, 1 thread per process; peak resident memory of one call beyond its inputs, "
          "fresh process per cell\n")
    for kind, (n, k) in sizes.items():
        inputs = n * (2 * 4 + 1) if kind == "binary" else n * (k * 4 + 1)
        print(f"### {kind}: N = {n:.0e}{f', K = {k}' if kind == 'multiclass' else ''} "
              f"(inputs: {inputs / 2 ** 20:.0f} MiB of float32 outputs and uint8 labels)\n")
        print("| contender | peak beyond inputs (MiB) | bytes per row | seconds | AUROC |")
        print("|---|---|---|---|---|")
        for name in CONTENDERS[kind]:
            r = measure(kind, name, n, k)
            print(f"| {name} | {r['peak'] / 2 ** 20:.0f} | {r['peak'] / n:.0f} | {r['seconds']:.2f} | {r['value']:.6f} |",
                  flush=True)
        print()


if __name__ == "__main__":
    main()
