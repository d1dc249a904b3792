"""Throughput (img/s) of every corruption at severity 3 on a batch of 32x32 RGB images, in one run.

    .venv/bin/python benchmarks/corruption_speed.py [--images 10000] [--threads 2]

The reference is the one the issue names: glass blur as the original CIFAR-C code does it, a Python loop that
swaps pixels one at a time (``iterations x H x W`` swaps per image, numpy, ~20 ms per 32x32 image), timed on
a small sample in the same run; ``glass_blur`` is reported as a ratio against it. Each corruption runs on
chunks of 1,000 images (as ``calikd corrupt`` does) and its best of ``--rounds`` rounds counts.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from calikd.corruptions import corrupt, get_corruption, list_corruptions
from calikd.corruptions.kernels import gaussian_blur


def reference_glass_blur(
    images: np.ndarray, sigma: float, max_delta: int, iterations: int, seed: int
) -> np.ndarray:
    """The sequential pixel-swap glass blur (the reference algorithm), image by image."""
    rng = np.random.default_rng(seed)
    out = np.empty_like(images)
    for i, image in enumerate(images):  # (C, H, W) float in [0, 1]
        x = gaussian_blur(torch.from_numpy(image)[None], sigma)[0].numpy().copy()
        h, w = x.shape[-2:]
        for _ in range(iterations):
            for row in range(h - max_delta, max_delta, -1):
                for col in range(w - max_delta, max_delta, -1):
                    dx, dy = rng.integers(-max_delta, max_delta, size=2)
                    r2, c2 = row + dy, col + dx
                    x[:, row, col], x[:, r2, c2] = x[:, r2, c2].copy(), x[:, row, col].copy()
        out[i] = gaussian_blur(torch.from_numpy(x)[None], sigma)[0].numpy()
    return out


def best_rate(fn, n: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--reference-images", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/bench_corruptions")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(args.images, 3, 32, 32, generator=gen)

    glass = get_corruption("glass_blur").param(3, "cifar")
    sample = images[: args.reference_images].numpy()
    ref_rate = best_rate(lambda: reference_glass_blur(sample, *glass, seed=0), len(sample), 1)
    print(f"reference glass blur (sequential swaps): {ref_rate:8.1f} img/s  ({1000 / ref_rate:.1f} ms/img)")

    rows = []
    for name in list_corruptions():

        def run(name: str = name) -> None:
            for start in range(0, args.images, 1000):
                corrupt(images[start : start + 1000], name, 3, seed=start)

        rate = best_rate(run, args.images, args.rounds)
        ratio = rate / ref_rate if name == "glass_blur" else None
        rows.append({"corruption": name, "images_per_s": rate, "vs_reference": ratio})
        extra = f"   {ratio:6.0f}x the reference" if ratio else ""
        print(f"{name:<18} {rate:10.0f} img/s{extra}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "images": args.images,
        "size": "3x32x32",
        "severity": 3,
        "threads": args.threads,
        "torch": torch.__version__,
        "reference_glass_blur_images_per_s": ref_rate,
        "corruptions": rows,
    }
    (out / "corruption_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out / 'corruption_speed.json'}")


if __name__ == "__main__":
    main()
