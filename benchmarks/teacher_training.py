"""Teacher-training benchmark on Fashion-MNIST: fp32 vs the fast path, and accuracy of three teachers.

Throughput is measured for both precisions in this one run and reported as a ratio (timings vary run to run
by +-25% on shared CPUs, so only in-run ratios are meaningful). Usage::

    python benchmarks/teacher_training.py                    # throughput + accuracy runs (~40 min on 2 cores)
    python benchmarks/teacher_training.py --skip-accuracy    # throughput only (~2 min)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from calikd.data import ArrayDataset, BatchLoader, build_train_transform, load_dataset
from calikd.engine import build_optimizer, build_scheduler
from calikd.models import create_model
from calikd.teacher import TeacherConfig, train_one_epoch, train_teacher
from calikd.utils.device import resolve_precision
from calikd.utils.seed import make_generator

RECIPES = {
    "resnet20": {"epochs": 30, "lr": 0.1},
    "cnn": {"epochs": 12, "lr": 0.1},
    "mlp": {"epochs": 15, "lr": 0.1, "augment": False},  # random crops hurt a pixel-wise MLP
}


def throughput(model_name: str, precision_name: str, data: ArrayDataset, *, info, repeats: int = 2) -> float:
    """Training img/s of ``model_name`` over ``data`` (best of ``repeats`` passes after one warm-up pass)."""
    device = torch.device("cpu")
    precision = resolve_precision(precision_name, device)
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=info.num_classes, in_channels=info.in_channels)
    if precision.channels_last:
        model.to(memory_format=torch.channels_last)
    loader = BatchLoader(data, 128, shuffle=True, drop_last=True)
    optimizer = build_optimizer(model, "sgd", lr=0.05)
    scheduler = build_scheduler(optimizer, "constant", epochs=1, steps_per_epoch=len(loader))
    transform = build_train_transform(info)
    rates = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        train_one_epoch(
            model,
            loader,
            transform,
            optimizer,
            scheduler,
            generator=make_generator(i),
            device=device,
            precision=precision,
            show_progress=False,
        )
        rates.append(len(loader) * 128 / (time.perf_counter() - start))
    return max(rates[1:])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--skip-accuracy", action="store_true", help="only measure throughput")
    parser.add_argument("--models", nargs="*", default=list(RECIPES), help="models for the accuracy runs")
    parser.add_argument("--epochs", type=int, help="override the epochs of every accuracy run")
    parser.add_argument("--skip-throughput", action="store_true", help="only run the accuracy runs")
    parser.add_argument("--out", default="runs/bench", help="folder for checkpoints and the JSON result")
    args = parser.parse_args()

    splits = load_dataset("fashion-mnist")
    subset = ArrayDataset(splits.train.images[:5120], splits.train.labels[:5120])
    result: dict = {"throughput": {}, "accuracy": {}}
    print("training throughput on Fashion-MNIST, batch 128, img/s (best of 2 passes over 5120 images)")
    for name in () if args.skip_throughput else ("resnet20", "cnn"):
        fp32 = throughput(name, "fp32", subset, info=splits.info)
        fast = throughput(name, "auto", subset, info=splits.info)
        result["throughput"][name] = {"fp32": fp32, "auto": fast, "ratio": fast / fp32}
        print(
            f"  {name:<10} fp32 {fp32:7.0f}   auto ({resolve_precision('auto', torch.device('cpu')).name}) "
            f"{fast:7.0f}   ratio {fast / fp32:.2f}x"
        )

    if not args.skip_accuracy:
        print("\naccuracy runs (precision auto, SGD + Nesterov, cosine schedule, seed 0)")
        for name in args.models:
            recipe = dict(RECIPES.get(name, {"epochs": 15, "lr": 0.05}))
            if args.epochs:
                recipe["epochs"] = args.epochs
            cfg = TeacherConfig(
                dataset="fashion-mnist",
                model=name,
                out=f"{args.out}/{name}",
                overwrite=True,
                progress=False,
                **recipe,
            )
            res = train_teacher(
                cfg, data=splits, log=lambda line, n=name: print(f"    [{n}] {line}", flush=True)
            )
            result["accuracy"][name] = {**recipe, **res.to_dict()}
            print(
                f"  {name:<10} {recipe['epochs']:>3} epochs  test acc last {res.test_last['accuracy']:.4f}  "
                f"best-on-val {res.test_best['accuracy']:.4f} (epoch {res.best_epoch})  "
                f"nll {res.test_last['nll']:.4f}  ece {res.test_last['ece']:.4f}  "
                f"{res.wall_time_s / 60:.1f} min at {res.train_images_per_s:.0f} img/s"
            )
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "bench.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
