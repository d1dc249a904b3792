"""Temperature-scaling benchmark: calikd's exact NLL fit vs the common L-BFGS loop, and exactness.

1. Speed at equal or better NLL, on 10,000 x 100 synthetic logits: ``fit_temperature_nll`` (safeguarded
   Newton in float64) against the widespread implementation -- one ``torch.optim.LBFGS([T], lr=0.01,
   max_iter=50)`` step on the cross-entropy of ``logits / T`` from ``T = 1.5`` (the pattern of
   gpleiss/temperature_scaling). Both are timed in this one run, interleaved, and reported as a ratio of
   medians (timings vary run to run on shared CPUs, so only in-run ratios are meaningful). A strong-Wolfe
   float64 L-BFGS is shown for reference.
2. Exactness: on logits whose labels are drawn from ``softmax(z / T_true)``, the fitted ``T`` against the NLL
   optimum found independently (dense float64 grid over log T, then golden section to 1e-10).

Usage::

    python benchmarks/temperature_fit.py                 # ~1 min on 2 shared cores
    python benchmarks/temperature_fit.py --repeats 9 --threads 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F

from calikd.calibration import TemperatureScaling, fit_temperature_nll


def synthetic(n: int, c: int, t_true: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 logits ``3 * N(0, 1)`` and labels drawn from ``softmax(z / t_true)``."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=gen) * 3.0
    labels = torch.multinomial(torch.softmax(logits.double() / t_true, dim=1), 1, generator=gen).squeeze(1)
    return logits, labels


def nll64(logits: torch.Tensor, labels: torch.Tensor, t: float) -> float:
    """Reference NLL of ``logits / t`` in float64 (plain log-softmax, independent of the fit's code)."""
    return float(F.cross_entropy(logits.double() / t, labels))


def lbfgs_common(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, int]:
    """The common loop: LBFGS([T], lr=0.01, max_iter=50) from T = 1.5, float32; returns (T, evaluations)."""
    temperature = torch.nn.Parameter(torch.ones(1) * 1.5)
    optimizer = torch.optim.LBFGS([temperature], lr=0.01, max_iter=50)
    evals = 0

    def closure() -> torch.Tensor:
        nonlocal evals
        evals += 1
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / temperature, labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(temperature.detach()), evals


def lbfgs_strong_wolfe(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, int]:
    """A careful L-BFGS for reference: log T, float64, strong-Wolfe line search, tight tolerances."""
    z = logits.double()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [log_t],
        lr=1.0,
        max_iter=100,
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
        line_search_fn="strong_wolfe",
    )
    evals = 0

    def closure() -> torch.Tensor:
        nonlocal evals
        evals += 1
        optimizer.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp()), evals


def reference_optimum(
    logits: torch.Tensor, labels: torch.Tensor, t_min: float = 0.05, t_max: float = 20.0
) -> float:
    """NLL-optimal T by a dense log-grid (401 points) and golden section on the best bracket, float64."""
    z = logits.double()
    grid = torch.linspace(math.log(t_min), math.log(t_max), 401, dtype=torch.float64).tolist()
    values = [nll64(z, labels, math.exp(u)) for u in grid]
    k = min(range(len(grid)), key=values.__getitem__)
    a, b = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll64(z, labels, math.exp(c)), nll64(z, labels, math.exp(d))
    while b - a > 1e-10:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll64(z, labels, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll64(z, labels, math.exp(d))
    return math.exp(0.5 * (a + b))


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def speed(n: int, c: int, repeats: int) -> dict[str, object]:
    logits, labels = synthetic(n, c, 1.5, seed=0)
    runs: dict[str, list[float]] = {"ours": [], "fit": [], "lbfgs": [], "wolfe": []}
    for _ in range(repeats + 1):  # the first round warms up and is dropped
        for key, fn in (
            ("ours", lambda: fit_temperature_nll(logits, labels)),
            ("fit", lambda: TemperatureScaling().fit(logits, labels, split="val")),
            ("lbfgs", lambda: lbfgs_common(logits, labels)),
            ("wolfe", lambda: lbfgs_strong_wolfe(logits, labels)),
        ):
            seconds, out = timed(fn)
            runs[key].append(seconds)
            if key == "ours":
                ours = out
            elif key == "lbfgs":
                t_lbfgs, lbfgs_evals = out
            elif key == "wolfe":
                t_wolfe, wolfe_evals = out
    med = {k: statistics.median(v[1:]) for k, v in runs.items()}
    t_ours = ours.temperature
    return {
        "shape": [n, c],
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "median_seconds": med,
        "speedup_vs_lbfgs": med["lbfgs"] / med["ours"],
        "speedup_vs_strong_wolfe": med["wolfe"] / med["ours"],
        "T_ours": t_ours,
        "T_lbfgs": t_lbfgs,
        "T_strong_wolfe": t_wolfe,
        "abs_T_ours_minus_lbfgs": abs(t_ours - t_lbfgs),
        "nll_ours": nll64(logits, labels, t_ours),
        "nll_lbfgs": nll64(logits, labels, t_lbfgs),
        "nll_strong_wolfe": nll64(logits, labels, t_wolfe),
        "nll_uncalibrated": nll64(logits, labels, 1.0),
        "evaluations": {"ours": ours.evaluations, "lbfgs": lbfgs_evals, "strong_wolfe": wolfe_evals},
        "ours_converged": ours.converged,
    }


def exactness(n: int, c: int, temperatures: list[float]) -> list[dict[str, float]]:
    rows = []
    for i, t_true in enumerate(temperatures):
        logits, labels = synthetic(n, c, t_true, seed=100 + i)
        fit = fit_temperature_nll(logits, labels)
        t_opt = reference_optimum(logits, labels)
        rows.append(
            {
                "T_true": t_true,
                "T_fit": fit.temperature,
                "T_nll_optimum": t_opt,
                "abs_fit_minus_optimum": abs(fit.temperature - t_opt),
                "abs_fit_minus_true": abs(fit.temperature - t_true),
                "iterations": fit.iterations,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is steadiest on a shared CPU)"
    )
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    s = speed(args.n, args.classes, args.repeats)
    med, ev = s["median_seconds"], s["evaluations"]
    print(f"temperature fit on {args.n} x {args.classes} logits (T_true = 1.5), {s['threads']} thread(s),")
    print(f"median of {args.repeats} interleaved runs")
    print(f"  ours  fit_temperature_nll       {med['ours'] * 1e3:8.1f} ms  ({ev['ours']} passes)")
    print(f"  ours  TemperatureScaling().fit  {med['fit'] * 1e3:8.1f} ms  (with validation + record metrics)")
    print(f"  LBFGS lr=0.01 max_iter=50       {med['lbfgs'] * 1e3:8.1f} ms  ({ev['lbfgs']} passes)")
    print(f"  LBFGS strong-Wolfe float64      {med['wolfe'] * 1e3:8.1f} ms  ({ev['strong_wolfe']} passes)")
    print(f"  speed-up vs common LBFGS: {s['speedup_vs_lbfgs']:.1f}x (goal >= 10x)")
    print(f"  speed-up vs strong-Wolfe LBFGS: {s['speedup_vs_strong_wolfe']:.1f}x")
    print(f"  T: ours {s['T_ours']:.9f}  LBFGS {s['T_lbfgs']:.9f}  strong-Wolfe {s['T_strong_wolfe']:.9f}")
    print(f"  |T_ours - T_lbfgs| = {s['abs_T_ours_minus_lbfgs']:.3e}")
    nlls = (s["nll_ours"], s["nll_lbfgs"], s["nll_strong_wolfe"])
    print("  NLL: ours {:.10f}  LBFGS {:.10f}  strong-Wolfe {:.10f}".format(*nlls))
    print(f"  NLL uncalibrated {s['nll_uncalibrated']:.6f}")
    print(f"  NLL(LBFGS) - NLL(ours) = {s['nll_lbfgs'] - s['nll_ours']:.3e} (>= 0: ours is at least as good)")

    rows = exactness(args.n, args.classes, [0.5, 1.5, 3.0])
    print(
        "\nexactness: |T_fit - T_nll_optimum| (goal < 1e-4), optimum by dense float64 grid + golden section"
    )
    for r in rows:
        print(
            f"  T_true {r['T_true']:4.1f}: T_fit {r['T_fit']:.9f}  optimum {r['T_nll_optimum']:.9f}  "
            f"|diff| {r['abs_fit_minus_optimum']:.2e}  |T_fit - T_true| {r['abs_fit_minus_true']:.3f}  "
            f"({r['iterations']} iterations)"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"speed": s, "exactness": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
