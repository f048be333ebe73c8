"""Speed of fastai_aum's functional core against the sort floor and its peers, measured in one run.

    python benchmarks/bench_functional.py                   # CPU, and CUDA rows when a GPU is present
    python benchmarks/bench_functional.py --quick           # smaller sizes, fewer repetitions
    python benchmarks/bench_functional.py --only minibatch  # just the batch-size table (1 thread)

It measures the `fastai_aum` that Python imports (the header prints its path): run it with
`PYTHONPATH=.` from the repository root to measure this checkout rather than an installed copy.

Every row times its contenders round-robin on the same data, in the same process, and reports the
median of the repetitions. The floor is one `torch.sort` of the same values (with indices). fastai_aum
can beat it on the CPU because it sorts integer keys that order like the floats, which torch sorts
with a radix sort; the "key sort" column times that step alone.
"""
from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torchmetrics.functional.classification import binary_auroc

import fastai_aum
from fastai_aum.functional.baseline import plain_autograd_aum
from fastai_aum.functional import aum, auroc
from fastai_aum.functional._sorting import sort_rows_descending


def _timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    def run(fn):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0
    return run


def measure(contenders: dict[str, Callable[[], object]], reps: int, device: torch.device,
            shuffle: bool = False) -> dict[str, float]:
    """Median seconds of each contender, run round-robin so that drift hits them all alike (in a new
    random order each round when `shuffle`, so that no contender always follows the same one)."""
    run = _timer(device)
    for fn in contenders.values():  # warm-up
        fn()
    times = {name: [] for name in contenders}
    names, rng = list(contenders), random.Random(0)
    for _ in range(reps):
        if shuffle:
            rng.shuffle(names)
        for name in names:
            times[name].append(run(contenders[name]))
    return {name: statistics.median(ts) for name, ts in times.items()}


def binary_data(n: int, device: torch.device, seed: int = 0, pos_frac: float = 0.1):
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(n, generator=g) < pos_frac
    s = torch.randn(n, generator=g) + y.float()  # float32 logits, some signal
    return s.to(device), y.to(device)


def reps_for(n: int, quick: bool) -> int:
    r = 21 if n <= 1e4 else 11 if n <= 1e5 else 7 if n <= 1e6 else 3
    return max(3, r // 3) if quick else r


def fmt_ms(t: float) -> str:
    return f"{t * 1e3:.3g}"


def auroc_rows(sizes, device, quick):
    print(f"\n### Binary AUROC ({device.type}), float32 logits, 10% positives; times in ms, median\n")
    print("| N | sort floor | key sort and gather | fastai_aum | x floor | scikit-learn | torchmetrics | sklearn / ours "
          "| torchmetrics / ours |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        s, y = binary_data(n, device)
        s_np, y_np = s.cpu().numpy(), y.cpu().numpy()
        assert abs(auroc(s, y).item() - roc_auc_score(y_np, s_np)) < 1e-9, "the timed result must be right"
        contenders = {
            "floor": lambda: torch.sort(s),
            "key": lambda: sort_rows_descending(s[None]),
            "ours": lambda: auroc(s, y),
            "torchmetrics": lambda: binary_auroc(s, y.long()),
        }
        if device.type == "cpu":
            contenders["sklearn"] = lambda: roc_auc_score(y_np, s_np)
        t = measure(contenders, reps_for(n, quick), device)
        sk = t.get("sklearn")
        sk_ms, sk_ratio = (fmt_ms(sk), f"{sk / t['ours']:.1f}") if sk else ("n/a", "n/a")
        print(f"| {n:.0e} | {fmt_ms(t['floor'])} | {fmt_ms(t['key'])} | {fmt_ms(t['ours'])} | "
              f"{t['ours'] / t['floor']:.2f} | {sk_ms} | {fmt_ms(t['torchmetrics'])} | {sk_ratio} | {t['torchmetrics'] / t['ours']:.1f} |")


def aum_rows(sizes, device, quick):
    print(f"\n### Binary AUM, forward + backward ({device.type}), rate normalisation; times in ms, median\n")
    print("| N | sort floor | fastai_aum | x floor | plain autograd | plain / ours |")
    print("|---|---|---|---|---|---|")
    for n in sizes:
        s, y = binary_data(n, device)
        s = s.requires_grad_()

        def ours():
            aum(s, y).backward()

        def plain():
            plain_autograd_aum(s, y, stable=False).backward()  # its fastest form

        t = measure({"floor": lambda: torch.sort(s.detach()), "ours": ours, "plain": plain}, reps_for(n, quick), device)
        print(f"| {n:.0e} | {fmt_ms(t['floor'])} | {fmt_ms(t['ours'])} | {t['ours'] / t['floor']:.2f} | "
              f"{fmt_ms(t['plain'])} | {t['plain'] / t['ours']:.1f} |")


def multiclass_rows(n, k, device, quick):
    print(f"\n### Multiclass AUM, forward + backward ({device.type}), K = {k}, N = {n:.0e}; times in ms, median\n")
    print("| average | sort floor (K*N values) | fastai_aum | x floor |")
    print("|---|---|---|---|")
    g = torch.Generator().manual_seed(0)
    z = torch.randn(n, k, generator=g).to(device).requires_grad_()
    y = torch.randint(0, k, (n,), generator=g).to(device)
    flat = torch.randn(n * k, generator=g).to(device)
    for average in ("micro", "macro"):
        def ours():
            aum(z, y, average=average).backward()
        t = measure({"floor": lambda: torch.sort(flat), "ours": ours}, reps_for(n * k, quick), device)
        print(f"| {average} | {fmt_ms(t['floor'])} | {fmt_ms(t['ours'])} | {t['ours'] / t['floor']:.2f} |")


def plain_multiclass_aum(z, y, average: str):
    """The peer for multiclass AUM: plain autograd AUM on the softmax probabilities, pooled (micro) or
    per class and averaged over the classes with both labels (macro)."""
    p = torch.softmax(z, dim=1)
    onehot = y[:, None] == torch.arange(z.shape[1], device=z.device)
    if average == "micro":
        return plain_autograd_aum(p.reshape(-1), onehot.reshape(-1), stable=False)
    values = [plain_autograd_aum(p[:, k], onehot[:, k], stable=False) for k in range(z.shape[1])
              if 0 < int(onehot[:, k].sum()) < len(y)]
    return torch.stack(values).mean() if values else p.sum() * 0


def minibatch_rows(sizes, k, device, reps):
    """Training batch sizes, where the fixed cost of each call dominates: ours against plain autograd
    AUM and against BCE (binary) or cross-entropy (multiclass), forward + backward, one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        print(f"\n### Minibatch sizes ({device.type}), forward + backward, torch.set_num_threads(1), median of {reps} "
              f"calls, contenders interleaved in random order; times in us\n")
        print("binary: float32 logits, 10% positives, rate normalisation; peers plain autograd AUM and BCE with logits.")
        print(f"multiclass: K = {k} logits, uniform labels; peers plain autograd AUM on the softmax probabilities "
              "(pooled for micro, per class for macro) and cross-entropy.\n")
        print("| problem | N | fastai_aum | plain autograd | BCE / CE | ours / plain | ours / BCE-CE |")
        print("|---|---|---|---|---|---|---|")
        for problem in ("binary", "micro", "macro"):
            for n in sizes:
                g = torch.Generator().manual_seed(n)
                if problem == "binary":
                    y = torch.rand(n, generator=g) < 0.1
                    x = (torch.randn(n, generator=g) + y.float()).to(device).requires_grad_()
                    y, yf = y.to(device), y.float().to(device)

                    def ours():
                        aum(x, y).backward()

                    def plain():
                        plain_autograd_aum(x, y, stable=False).backward()

                    def peer():
                        F.binary_cross_entropy_with_logits(x, yf).backward()
                else:
                    x = torch.randn(n, k, generator=g).to(device).requires_grad_()
                    y = torch.randint(0, k, (n,), generator=g).to(device)

                    def ours():
                        aum(x, y, average=problem).backward()

                    def plain():
                        plain_multiclass_aum(x, y, problem).backward()

                    def peer():
                        F.cross_entropy(x, y).backward()
                t = measure({"ours": ours, "plain": plain, "peer": peer}, reps, device, shuffle=True)
                label = "binary" if problem == "binary" else f"{problem}, K = {k}"
                print(f"| {label} | {n} | {t['ours'] * 1e6:.0f} | {t['plain'] * 1e6:.0f} | {t['peer'] * 1e6:.0f} | "
                      f"{t['ours'] / t['plain']:.2f} | {t['ours'] / t['peer']:.2f} |")
    finally:
        torch.set_num_threads(threads)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repetitions")
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument("--only", choices=["minibatch"], help="run just this table")
    args = parser.parse_args(argv)
    devices = [torch.device("cpu")] if args.device in ("cpu", "all") else []
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
          + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "")
          + f"; fastai_aum from {fastai_aum.__file__}")
    auroc_sizes = [10**3, 10**4, 10**5, 10**6] + ([] if args.quick else [10**7])
    aum_sizes = [10**3, 10**4, 10**5] + ([] if args.quick else [10**6])
    for device in devices:
        minibatch_rows([64, 256, 1024, 4096], 10, device, 100 if args.quick else 300)
        if args.only == "minibatch":
            continue
        auroc_rows(auroc_sizes, device, args.quick)
        aum_rows(aum_sizes, device, args.quick)
        multiclass_rows(10**4 if args.quick else 10**5, 10, device, args.quick)


if __name__ == "__main__":
    main()
