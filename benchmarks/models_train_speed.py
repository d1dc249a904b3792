"""Training throughput of a few models on this CPU (not a test; run by hand).

    .venv/bin/python benchmarks/models_train_speed.py [--models cnn mlp resnet20] [--steps 30]

Measures img/s of full training steps (forward + backward + SGD step), batch 128, 1x28x28 inputs,
10 classes, in fp32 and in bf16 autocast with channels_last, in one process. Each configuration is timed in
``--rounds`` interleaved rounds and the best round is reported (robust to other processes sharing the CPU);
the median is shown too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from calikd.models import count_parameters, create_model


def make_step(name: str, bf16: bool, batch: int) -> Callable[[], None]:
    torch.manual_seed(0)
    model = create_model(name, 10, 1)
    x = torch.randn(batch, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))
    if bf16:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def rate(step: Callable[[], None], steps: int, batch: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["cnn", "mlp", "resnet20"])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    configs = [(name, bf16) for name in args.models for bf16 in (False, True)]
    steps = {}
    for cfg in configs:
        steps[cfg] = make_step(*cfg, args.batch)
        for _ in range(args.warmup):
            steps[cfg]()
    rates: dict[tuple[str, bool], list[float]] = {cfg: [] for cfg in configs}
    load0 = os.getloadavg()[0]
    for _ in range(args.rounds):
        for cfg in configs:
            rates[cfg].append(rate(steps[cfg], args.steps, args.batch))
    load1 = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, 1x28x28")
    print(f"best (median) of {args.rounds} rounds x {args.steps} steps; load avg {load0:.1f} -> {load1:.1f}")
    print(f"{'model':12s} {'params':>9s} {'fp32 img/s':>18s} {'bf16+CL img/s':>18s}")
    for name in args.models:
        cells = []
        for bf16 in (False, True):
            r = rates[(name, bf16)]
            cells.append(f"{max(r):7.0f} ({statistics.median(r):6.0f})")
        params = count_parameters(create_model(name, 10, 1))
        print(f"{name:12s} {params:9d} {cells[0]:>18s} {cells[1]:>18s}")


if __name__ == "__main__":
    main()
