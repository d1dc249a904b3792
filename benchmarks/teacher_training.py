"""Teacher-training benchmark on Fashion-MNIST: calikd's ``--precision auto`` against plain fp32 in a process
calikd did not tune, and accuracy of three teachers.

Throughput is measured in this one run, in interleaved rounds, and reported as ratios (timings vary run to
run by +-25% on shared CPUs, so only in-run ratios are meaningful):
- ``fp32 untuned``: fp32 training in a process with the default allocator and OpenMP settings
  (``CALIKD_TUNE_PROCESS=0``), which is what ``auto`` gave on a CPU without bf16 units before it measured;
- ``fp32``: the same in a process set up as calikd sets itself up (allocator, OpenMP wait policy);
- ``auto``: the path ``--precision auto`` measures and picks for a 30-epoch run (printed with its probe).
Usage::

    python benchmarks/teacher_training.py                    # throughput + accuracy runs (~40 min on 2 cores)
    python benchmarks/teacher_training.py --skip-accuracy    # throughput only (~3 min)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

THROUGHPUT_MODELS = ("resnet20", "cnn", "wrn_16_2", "mlp")
SUBSET = 5120
RECIPES = {
    "resnet20": {"epochs": 30, "lr": 0.1},
    "cnn": {"epochs": 12, "lr": 0.1},
    "mlp": {"epochs": 15, "lr": 0.1, "augment": False},  # random crops hurt a pixel-wise MLP
}


def worker(args: argparse.Namespace) -> None:
    """Serve one pass of training per request: ``MODEL:PATH`` with PATH fp32 or auto."""
    import calikd  # noqa: F401  (first: it sets the process up before torch starts, unless told not to)

    # isort: split
    import torch
    from interleave import serve

    from calikd._startup import tune_process
    from calikd.data import ArrayDataset, BatchLoader, build_train_transform, load_dataset
    from calikd.engine import build_optimizer, build_scheduler
    from calikd.engine.precision import select_precision
    from calikd.models import create_model
    from calikd.teacher import train_one_epoch
    from calikd.utils.device import resolve_precision
    from calikd.utils.seed import make_generator

    splits = load_dataset("fashion-mnist")
    data = ArrayDataset(splits.train.images[: args.samples], splits.train.labels[: args.samples])
    device = torch.device("cpu")
    info: dict[str, object] = dict(tune_process())

    def loop(model_name: str, path: str):
        torch.manual_seed(0)
        model = create_model(model_name, num_classes=10, in_channels=1)
        if path == "auto":
            choice = select_precision(
                "auto",
                device,
                model,
                input_shape=(1, 28, 28),
                num_classes=10,
                batch_size=128,
                total_steps=30 * (len(splits.train) // 128),
                model_key={"name": model_name, "kwargs": {}},
            )
            precision = choice.precision
            info[model_name] = choice.line()
        else:
            precision = resolve_precision(path, device)
        if precision.channels_last:
            model.to(memory_format=torch.channels_last)
        loader = BatchLoader(data, 128, shuffle=True, drop_last=True)
        optimizer = build_optimizer(model, "sgd", lr=0.05)
        scheduler = build_scheduler(optimizer, "constant", epochs=1, steps_per_epoch=len(loader))
        transform = build_train_transform(splits.info)

        def run() -> int:
            train_one_epoch(
                model,
                loader,
                transform,
                optimizer,
                scheduler,
                generator=make_generator(0),
                device=device,
                precision=precision,
                show_progress=False,
            )
            return len(loader) * 128

        run()  # warm-up pass
        return run

    paths = ("fp32",) if args.worker == "untuned" else ("fp32", "auto")
    loops = {f"{m}:{p}": loop(m, p) for m in args.throughput_models for p in paths}
    serve(loops, info)


def measure_throughput(args: argparse.Namespace) -> dict:
    from interleave import Worker, best_rate, run_rounds

    script = str(Path(__file__).resolve())
    common = [script, "--samples", str(args.samples), "--throughput-models", *args.throughput_models]
    user_env = {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")}
    models = args.throughput_models
    probes = str(Path(tempfile.mkdtemp(prefix="calikd-probes-")) / "probes.json")  # measured in this run
    workers = [
        Worker(
            "untuned",
            [*common, "--worker", "untuned"],
            {"CALIKD_TUNE_PROCESS": "0", **user_env},
            [f"{m}:fp32" for m in models],
        ),
        Worker(
            "calikd",
            [*common, "--worker", "calikd"],
            {"CALIKD_PROBE_CACHE": probes},
            [f"{m}:{p}" for m in models for p in ("fp32", "auto")],
        ),
    ]
    results = run_rounds(workers, args.rounds)
    from calikd.engine.probe_cache import cpu_model

    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores")
    for w in workers:
        print(f"{w.name} process: {json.dumps(w.info)}")
    print(
        f"training throughput, batch 128, {args.samples} images per pass, "
        f"best of {args.rounds} interleaved rounds"
    )
    print(
        f"{'model':<10}{'fp32 untuned':>14}{'fp32':>9}{'auto':>9}{'auto x untuned':>16}"
        f"{'sys s/1k (untuned, auto)':>27}"
    )
    table = {}
    for m in models:
        (base, base_sys), (fp32, _), (auto, auto_sys) = (
            best_rate(results[f"{m}:fp32"][: args.rounds]),
            best_rate(results[f"{m}:fp32"][args.rounds :]),
            best_rate(results[f"{m}:auto"]),
        )
        table[m] = {"fp32_untuned": base, "fp32": fp32, "auto": auto, "ratio": auto / base}
        print(
            f"{m:<10}{base:>14.0f}{fp32:>9.0f}{auto:>9.0f}{auto / base:>16.2f}"
            f"{base_sys:>14.3f}{auto_sys:>13.3f}"
        )
    return {"cpu": cpu_model(), "workers": {w.name: w.info for w in workers}, "models": table}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--skip-accuracy", action="store_true", help="only measure throughput")
    parser.add_argument("--models", nargs="*", default=list(RECIPES), help="models for the accuracy runs")
    parser.add_argument("--epochs", type=int, help="override the epochs of every accuracy run")
    parser.add_argument("--skip-throughput", action="store_true", help="only run the accuracy runs")
    parser.add_argument("--out", default="runs/bench", help="folder for checkpoints and the JSON result")
    parser.add_argument("--throughput-models", nargs="*", default=list(THROUGHPUT_MODELS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=SUBSET, help="training images per timed pass")
    parser.add_argument("--worker", choices=("untuned", "calikd"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    result: dict = {"throughput": {}, "accuracy": {}}
    if not args.skip_throughput:
        result["throughput"] = measure_throughput(args)

    if not args.skip_accuracy:
        from calikd.data import load_dataset
        from calikd.teacher import TeacherConfig, train_teacher

        splits = load_dataset("fashion-mnist")
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
