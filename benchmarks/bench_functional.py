"""Speed of fastai_aum's functional core against the sort floor and its peers, measured in one run.

    python benchmarks/bench_functional.py                   # CPU, and CUDA rows when a GPU is present
    python benchmarks/bench_functional.py --quick           # the sizes up to 1e5 only, same repetitions
    python benchmarks/bench_functional.py --only minibatch  # one table (auroc, tied, multiclass, aum, minibatch)

It measures the `fastai_aum` that Python imports (the header prints its path): run it with
`PYTHONPATH=.` from the repository root to measure this checkout rather than an installed copy.

Every table runs its contenders round-robin on the same data, in the same process, under the torch
thread count it states (`--threads`, default 1), and reports each cell as the median [min, max] over
trials (`--trials`, default 3), each trial the median of its rounds; a ratio is taken within each trial.
The floor is one `torch.sort` of the same values (with indices); "fewest ops" is an exact AUROC in the
fewest torch operations we know, without checks (`fewest_ops_auroc`), the floor of any torch version
at small N. fastai_aum can beat it on the CPU
because it sorts integer keys that order like the floats, which torch radix-sorts; the "key sort"
column times that step alone. The AUM peer is the published blog's autograd version
(`fastai_aum.functional.baseline.blog_autograd_aum`).
"""
from __future__ import annotations

import argparse
import platform

import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torchmetrics.functional.classification import binary_auroc, multiclass_auroc

import fastai_aum
from fastai_aum.functional.baseline import blog_autograd_aum
from fastai_aum.functional import aum, auroc
from fastai_aum.functional._sorting import sort_rows_descending
from _timing import fmt, fmt_ratio, measure, threads_note  # this folder is on sys.path


def binary_data(n: int, device: torch.device, seed: int = 0, pos_frac: float = 0.1, decimals: int | None = None):
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(n, generator=g) < pos_frac
    s = torch.randn(n, generator=g) + y.float()  # float32 logits, some signal
    if decimals is not None:
        s = (s * 10**decimals).round() / 10**decimals
    return s.to(device), y.to(device)


def fewest_ops_auroc(s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Exact binary AUROC (ties too) in the fewest torch operations we know, with no checks: a float sort, then
    one trapezoid per distinct threshold. Not a contender but the floor of any torch implementation at small
    N, where each operation's fixed cost outweighs its arithmetic."""
    v, perm = torch.sort(s, descending=True, stable=True)
    tp = y.take(perm).cumsum(0, dtype=torch.float64)
    last = torch.ones_like(y, dtype=torch.bool)
    last[:-1] = v[1:] != v[:-1]
    at = last.nonzero().view(-1)
    t = tp.take(at)
    f = at + 1 - t
    zero = t.new_zeros(1)
    return torch.trapezoid(torch.cat([zero, t]), torch.cat([zero, f])) / (t[-1] * f[-1])


def reps_for(n: int) -> int:
    """Rounds per trial: enough that a trial's median is stable at every size (--quick keeps them)."""
    return 21 if n <= 1e4 else 11 if n <= 1e5 else 5 if n <= 1e6 else 3


def reps_note(sizes) -> str:
    return ", ".join(f"{reps_for(n)} at N = {n:.0e}" for n in sizes)


def auroc_rows(sizes, device, trials, decimals=None):
    what = "float32 logits" if decimals is None else f"float32 logits rounded to {decimals} decimals (heavy ties)"
    print(f"\n### Binary AUROC ({device.type}), {what}, 10% positives; times in ms\n")
    print(threads_note(reps_note(sizes), trials) + ".\n")
    cpu = device.type == "cpu"
    print("| N | sort floor | key sort and gather | fewest ops | fastai_aum | ours / floor | ours / fewest ops "
          "| scikit-learn | torchmetrics | sklearn / ours | torchmetrics / ours |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        s, y = binary_data(n, device, decimals=decimals)
        s_np, y_np = s.cpu().numpy(), y.cpu().numpy()
        assert abs(auroc(s, y).item() - roc_auc_score(y_np, s_np)) < 1e-9, "the timed result must be right"
        contenders = {"floor": lambda: torch.sort(s), "key": lambda: sort_rows_descending(s[None]),
                      "fewest": lambda: fewest_ops_auroc(s, y),
                      "ours": lambda: auroc(s, y), "torchmetrics": lambda: binary_auroc(s, y.long())}
        if cpu:
            contenders["sklearn"] = lambda: roc_auc_score(y_np, s_np)
        t = measure(contenders, reps_for(n), trials, device)
        sk, sk_ratio = (fmt(t["sklearn"]), fmt_ratio(t.ratio("sklearn", "ours"), ".1f")) if cpu else ("n/a", "n/a")
        print(f"| {n:.0e} | {fmt(t['floor'])} | {fmt(t['key'])} | {fmt(t['fewest'])} | {fmt(t['ours'])} | "
              f"{fmt_ratio(t.ratio('ours', 'floor'))} | {fmt_ratio(t.ratio('ours', 'fewest'))} | {sk} | {fmt(t['torchmetrics'])} | {sk_ratio} | "
              f"{fmt_ratio(t.ratio('torchmetrics', 'ours'))} |", flush=True)


def multiclass_auroc_rows(sizes, k, device, trials):
    print(f"\n### Multiclass AUROC, one-vs-rest macro ({device.type}), K = {k} float32 logits; times in ms\n")
    rounds = ", ".join(f"{reps_for(n * k)} at N = {n:.0e}" for n in sizes)
    print(threads_note(rounds, trials) + ". scikit-learn and torchmetrics are given the softmax "
          "probabilities (which they need); fastai_aum the logits.\n")
    cpu = device.type == "cpu"
    print("| N | fastai_aum | scikit-learn | torchmetrics | sklearn / ours | torchmetrics / ours |")
    print("|---|---|---|---|---|---|")
    for n in sizes:
        g = torch.Generator().manual_seed(n)
        z = torch.randn(n, k, generator=g).to(device)
        y = torch.randint(0, k, (n,), generator=g).to(device)
        p = torch.softmax(z.double(), 1)
        p_np, y_np = p.cpu().numpy(), y.cpu().numpy()
        assert abs(auroc(z, y).item() - roc_auc_score(y_np, p_np, multi_class="ovr")) < 1e-9
        contenders = {"ours": lambda: auroc(z, y),
                      "torchmetrics": lambda: multiclass_auroc(p.float(), y, num_classes=k, average="macro")}
        if cpu:
            contenders["sklearn"] = lambda: roc_auc_score(y_np, p_np, multi_class="ovr")
        t = measure(contenders, reps_for(n * k), trials, device)
        sk, sk_ratio = (fmt(t["sklearn"]), fmt_ratio(t.ratio("sklearn", "ours"), ".1f")) if cpu else ("n/a", "n/a")
        print(f"| {n:.0e} | {fmt(t['ours'])} | {sk} | {fmt(t['torchmetrics'])} | {sk_ratio} | "
              f"{fmt_ratio(t.ratio('torchmetrics', 'ours'))} |", flush=True)


def aum_rows(sizes, device, trials):
    print(f"\n### Binary AUM, forward + backward ({device.type}), rate normalisation; times in ms\n")
    print(threads_note(reps_note(sizes), trials) + ". The peer is the blog's autograd AUM.\n")
    print("| N | sort floor | fastai_aum | ours / floor | blog autograd | blog / ours |")
    print("|---|---|---|---|---|---|")
    for n in sizes:
        s, y = binary_data(n, device)
        s = s.requires_grad_()

        def ours():
            aum(s, y).backward()

        def blog():
            blog_autograd_aum(s, y).backward()

        t = measure({"floor": lambda: torch.sort(s.detach()), "ours": ours, "blog": blog}, reps_for(n), trials, device)
        print(f"| {n:.0e} | {fmt(t['floor'])} | {fmt(t['ours'])} | {fmt_ratio(t.ratio('ours', 'floor'))} | "
              f"{fmt(t['blog'])} | {fmt_ratio(t.ratio('blog', 'ours'))} |", flush=True)


def multiclass_rows(n, k, device, trials):
    print(f"\n### Multiclass AUM, forward + backward ({device.type}), K = {k}, N = {n:.0e}; times in ms\n")
    print(threads_note(reps_for(n * k), trials) + ".\n")
    print("| average | sort floor (K*N values) | fastai_aum | ours / floor |")
    print("|---|---|---|---|")
    g = torch.Generator().manual_seed(0)
    z = torch.randn(n, k, generator=g).to(device).requires_grad_()
    y = torch.randint(0, k, (n,), generator=g).to(device)
    flat = torch.randn(n * k, generator=g).to(device)
    for average in ("micro", "macro"):
        def ours():
            aum(z, y, average=average).backward()
        t = measure({"floor": lambda: torch.sort(flat), "ours": ours}, reps_for(n * k), trials, device)
        print(f"| {average} | {fmt(t['floor'])} | {fmt(t['ours'])} | {fmt_ratio(t.ratio('ours', 'floor'))} |",
              flush=True)


def blog_multiclass_aum(z, y, average: str):
    """The peer for multiclass AUM: the blog's autograd AUM on the softmax probabilities, pooled (micro) or
    per class and averaged over the classes with both labels (macro)."""
    p = torch.softmax(z, dim=1)
    onehot = y[:, None] == torch.arange(z.shape[1], device=z.device)
    if average == "micro":
        return blog_autograd_aum(p.reshape(-1), onehot.reshape(-1).long())
    values = [blog_autograd_aum(p[:, k], onehot[:, k].long()) for k in range(z.shape[1])
              if 0 < int(onehot[:, k].sum()) < len(y)]
    return torch.stack(values).mean() if values else p.sum() * 0


def minibatch_rows(sizes, k, device, reps, trials):
    """Training batch sizes, where the fixed cost of each call dominates: ours against the blog's autograd
    AUM and against BCE (binary) or cross-entropy (multiclass), forward + backward."""
    print(f"\n### Minibatch sizes ({device.type}), functional forward + backward; times in us\n")
    print(threads_note(reps, trials) + ".")
    print("binary: float32 logits, 10% positives, rate normalisation; peers the blog's autograd AUM and BCE with "
          f"logits. multiclass: K = {k} logits, uniform labels; peers the blog's autograd AUM on the softmax "
          "probabilities (pooled for micro, per class for macro) and cross-entropy.\n")
    print("| problem | N | fastai_aum | blog autograd | BCE / CE | ours / blog | ours / BCE-CE |")
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

                def blog():
                    blog_autograd_aum(x, y).backward()

                def peer():
                    F.binary_cross_entropy_with_logits(x, yf).backward()
            else:
                x = torch.randn(n, k, generator=g).to(device).requires_grad_()
                y = torch.randint(0, k, (n,), generator=g).to(device)

                def ours():
                    aum(x, y, average=problem).backward()

                def blog():
                    blog_multiclass_aum(x, y, problem).backward()

                def peer():
                    F.cross_entropy(x, y).backward()
            t = measure({"ours": ours, "blog": blog, "peer": peer}, reps, trials, device)
            label = "binary" if problem == "binary" else f"{problem}, K = {k}"
            print(f"| {label} | {n} | {fmt(t['ours'], 1e6, '.0f')} | {fmt(t['blog'], 1e6, '.0f')} | "
                  f"{fmt(t['peer'], 1e6, '.0f')} | {fmt_ratio(t.ratio('ours', 'blog'))} | "
                  f"{fmt_ratio(t.ratio('ours', 'peer'))} |", flush=True)


TABLES = ("auroc", "tied", "multiclass", "aum", "minibatch")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="sizes up to 1e5 only (the same repetitions)")
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument("--only", choices=TABLES, action="append", help="run just this table (repeatable)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for every table (default 1)")
    parser.add_argument("--trials", type=int, default=3, help="trials per cell (default 3)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    tables = args.only or TABLES
    devices = [torch.device("cpu")] if args.device in ("cpu", "all") else []
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} torch thread(s) in every table, "
          f"{platform.processor() or platform.machine()}"
          + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "")
          + f"; fastai_aum from {fastai_aum.__file__}")
    auroc_sizes = [10**3, 10**4, 10**5] + ([] if args.quick else [10**6, 10**7])
    aum_sizes = [10**3, 10**4, 10**5] + ([] if args.quick else [10**6])
    for device in devices:
        if "auroc" in tables:
            auroc_rows(auroc_sizes, device, args.trials)
        if "tied" in tables:
            auroc_rows(auroc_sizes, device, args.trials, decimals=2)
        if "multiclass" in tables:
            multiclass_auroc_rows([10**3, 10**4] + ([] if args.quick else [10**5]), 10, device, args.trials)
        if "aum" in tables:
            aum_rows(aum_sizes, device, args.trials)
            multiclass_rows(10**4 if args.quick else 10**5, 10, device, args.trials)
        if "minibatch" in tables:
            minibatch_rows([64, 256, 1024, 4096], 10, device, 200, args.trials)


if __name__ == "__main__":
    main()
