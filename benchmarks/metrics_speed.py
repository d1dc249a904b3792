"""Speed of the full metrics suite (``calibration_report``) against naive per-metric computation.

The naive reference computes each metric on its own, every one starting from a softmax over the full
``(N, C)`` tensor (float32, as typical evaluation code does), with dense one-hot/bucketize tensors. Both are
timed in the same run, so their ratio is meaningful even on a shared, noisy CPU; absolute seconds are not.
Usage::

    python benchmarks/metrics_speed.py                 # 1e6 x 100 float32: report, summary, references
    python benchmarks/metrics_speed.py --big           # ... and 1e6 x 1000 float16 (report only; ~2 GB)
    python benchmarks/metrics_speed.py --threads 1     # pin torch's intra-op threads

On a busy shared CPU, OpenMP's spinning threads can make 2 threads far slower than 1; run with
``--threads 1`` (or ``OMP_WAIT_POLICY=PASSIVE``) there.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from calikd import metrics

N_BINS = 15


def _timed(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _bins_ece(conf: torch.Tensor, correct: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    idx = torch.bucketize(conf, edges[1:-1])
    count = torch.bincount(idx, minlength=len(edges) - 1).float()
    conf_sum = torch.bincount(idx, weights=conf, minlength=len(edges) - 1)
    acc_sum = torch.bincount(idx, weights=correct.float(), minlength=len(edges) - 1)
    return torch.stack([count, conf_sum, acc_sum])


def naive_suite(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Each metric separately, each from its own full-tensor softmax."""
    n, c = logits.shape
    edges = torch.linspace(0, 1, N_BINS + 1)
    out: dict[str, float] = {}

    def top() -> tuple[torch.Tensor, torch.Tensor]:
        conf, pred = torch.softmax(logits.float(), dim=1).max(dim=1)
        return conf, pred == labels

    out["accuracy"] = float((torch.softmax(logits.float(), 1).argmax(1) == labels).float().mean())
    out["top5"] = float(
        (torch.softmax(logits.float(), 1).topk(5, 1).indices == labels[:, None]).any(1).float().mean()
    )
    out["nll"] = float(torch.nn.functional.cross_entropy(logits.float(), labels))
    p = torch.softmax(logits.float(), 1)
    out["brier"] = float(((p - torch.nn.functional.one_hot(labels, c)) ** 2).sum(1).mean())
    p = torch.softmax(logits.float(), 1)
    out["entropy"] = float(-(p * p.clamp_min(1e-38).log()).sum(1).mean())
    for name in ("ece", "mce", "ece_l2", "oe", "ece_split"):
        conf, correct = top()
        count, conf_sum, acc_sum = _bins_ece(conf, correct, edges)
        gap = (conf_sum - acc_sum) / count.clamp(min=1)
        out[name] = float((count * gap.abs()).sum() / n if name != "mce" else gap.abs().max())
    conf, correct = top()
    order = conf.argsort()
    chunks = torch.tensor_split(order, N_BINS)
    out["ace"] = sum(float((conf[i].sum() - correct[i].float().sum()).abs()) for i in chunks) / n
    p = torch.softmax(logits.float(), 1)
    idx = torch.bucketize(p, edges[1:-1]) + torch.arange(c) * N_BINS
    onehot = torch.nn.functional.one_hot(labels, c).float()
    size = c * N_BINS
    count = torch.bincount(idx.flatten(), minlength=size)
    p_sum = torch.bincount(idx.flatten(), weights=p.flatten(), minlength=size)
    hit_sum = torch.bincount(idx.flatten(), weights=onehot.flatten(), minlength=size)
    del count
    out["classwise_ece"] = float((p_sum - hit_sum).abs().sum() / (n * c))
    return out


def separate_calls(logits: torch.Tensor, labels: torch.Tensor) -> None:
    """calikd's own functions, one call (one streaming pass) per metric."""
    metrics.accuracy(logits, labels)
    metrics.top_k_accuracy(logits, labels, 5)
    metrics.negative_log_likelihood(logits, labels)
    metrics.brier_score(logits, labels)
    metrics.predictive_entropy(logits)
    for norm in ("l1", "l2", "max"):
        metrics.expected_calibration_error(logits, labels, N_BINS, norm)
    metrics.adaptive_calibration_error(logits, labels, N_BINS)
    metrics.classwise_ece(logits, labels, N_BINS)
    metrics.overconfidence_error(logits, labels, N_BINS)
    metrics.ece_decomposition(logits, labels, N_BINS)
    metrics.reliability_statistics(logits, labels, N_BINS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs (report, summary)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--big", action="store_true", help="also time 1e6 x 1000 float16 (~2 GB of logits)")
    parser.add_argument("--skip-naive", action="store_true", help="skip the slow references")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    n, c = args.n, args.classes
    logits = torch.randn(n, c, generator=gen) * 3
    # "trained-like" labels: the argmax for 70% of the samples (accuracy ~0.7); random labels are the
    # worst case for the report (top-k then needs dense comparisons on most rows)
    random_labels = torch.randint(0, c, (n,), generator=gen)
    labels = torch.where(torch.rand(n, generator=gen) < 0.7, logits.argmax(dim=1), random_labels)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {n} x {c} float32 logits")

    t_report = _timed(lambda: metrics.calibration_report(logits, labels, N_BINS), args.repeat)
    print(f"calibration_report, all metrics (accuracy 0.7):  {t_report:7.3f} s")
    t_random = _timed(lambda: metrics.calibration_report(logits, random_labels, N_BINS), args.repeat)
    print(f"calibration_report, random labels:               {t_random:7.3f} s")
    t_summary = _timed(lambda: metrics.summary_metrics(logits, labels), args.repeat)
    print(f"summary_metrics (accuracy, nll, ece):            {t_summary:7.3f} s")
    if not args.skip_naive:
        t_sep = _timed(lambda: separate_calls(logits, labels), 1)
        ratio = t_sep / t_report
        print(f"separate calikd calls, one pass per metric:      {t_sep:7.3f} s  ({ratio:.1f}x the report)")
        t_naive = _timed(lambda: naive_suite(logits, labels), 1)
        ratio = t_naive / t_report
        print(f"naive per-metric, full-tensor softmax each:      {t_naive:7.3f} s  ({ratio:.1f}x the report)")
    if args.big:
        del logits, labels, random_labels
        n, c = 1_000_000, 1000
        big = torch.empty(n, c, dtype=torch.float16)
        for start in range(0, n, 8192):
            rows = min(8192, n - start)
            big[start : start + rows] = torch.randn(rows, c, generator=gen) * 3
        big_labels = torch.randint(0, c, (n,), generator=gen)
        t_big = _timed(lambda: metrics.calibration_report(big, big_labels, N_BINS), 1)
        print(f"calibration_report, {n} x {c} float16:     {t_big:7.3f} s")


if __name__ == "__main__":
    main()
