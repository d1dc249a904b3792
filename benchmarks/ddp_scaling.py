"""Data-parallel scaling: one process against ``torchrun --nproc_per_node=N`` on the same machine.

Both runs train the same teacher (same global batch, seed and epochs) with the same total number of CPU
threads or on the same GPUs, in this one invocation, and the script prints their training throughput and the
ratio (timings vary run to run, so only in-run ratios are meaningful). Usage::

    python benchmarks/ddp_scaling.py                              # CPU: 1 x 2 threads vs 2 x 1 thread
    python benchmarks/ddp_scaling.py --nproc 8 --device cuda      # 1 GPU vs 8 GPUs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def train(nproc: int, threads: int, out: Path, args: argparse.Namespace) -> dict:
    """Run one ``calikd train-teacher`` (under torchrun when ``nproc`` > 1) and return its summary."""
    flags = [
        f"--dataset={args.dataset}",
        "--dataset-options",
        *args.dataset_options,
        f"--model={args.model}",
        f"--epochs={args.epochs}",
        f"--batch-size={args.batch_size}",
        f"--device={args.device}",
        f"--precision={args.precision}",
        "--no-progress",
        f"--out={out}",
    ]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd = [*(launcher if nproc > 1 else [sys.executable]), "-m", "calikd", "train-teacher", *flags]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nproc", type=int, default=2, help="processes of the data-parallel run")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per data-parallel process")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--dataset-options", nargs="*", default=["train_subset=6000"])
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one = train(1, args.nproc * args.threads, Path(tmp) / "one", args)
        many = train(args.nproc, args.threads, Path(tmp) / "ddp", args)
    rows = [
        (f"1 process x {args.nproc * args.threads} threads (reference)", one),
        (f"torchrun {args.nproc} processes x {args.threads} threads", many),
    ]
    ref = one["train_images_per_s"]
    print(
        f"{args.model} on {args.dataset}, global batch {args.batch_size}, "
        f"{args.epochs} epochs ({args.device})"
    )
    print(f"{'run':<45} {'train img/s':>12} {'x reference':>12} {'test acc':>9}")
    for name, summary in rows:
        rate = summary["train_images_per_s"]
        print(f"{name:<45} {rate:>12.0f} {rate / ref:>12.2f} {summary['test_last']['accuracy']:>9.4f}")


if __name__ == "__main__":
    main()
