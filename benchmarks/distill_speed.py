"""Throughput of calikd's distillation loop against a plain reference loop, measured in one run.

    .venv/bin/python benchmarks/distill_speed.py [--teacher-model resnet20] [--student cnn] [--samples 7680]

Same teacher/student pair (ResNet-20 -> cnn by default, random weights: speed does not depend on them), same
Fashion-MNIST images, same batched crop/flip, batch 128:
- ``reference``: the loop of RepDistiller/mdistiller, written the usual way: fp32, teacher forward under
  ``no_grad`` every step, ``F.kl_div`` KD loss (CE 0.1 + KD 0.9, T = 4), SGD; in its own process with the
  default allocator and OpenMP settings (``CALIKD_TUNE_PROCESS=0``);
- ``calikd``: :func:`calikd.distill.distill_one_epoch` with ``--precision auto`` (measured here) and the
  teacher's forward path chosen by measurement (``--teacher-path auto``, for a run of ``--run-epochs``
  epochs of the full training split), in a process set up as ``calikd`` sets itself up;
- ``calikd+cache``: the same with the teacher's logits read from a filled per-epoch cache;
- ``student-only``: the same loop with the ``ce`` method (no teacher);
- ``teacher-only``: the teacher's forward alone on its chosen path, over the same augmented batches;
- ``inputs-only``: the batches drawn and augmented, nothing else.
The KD loop draws a batch, runs the teacher's forward, then the student's step, so without the cache it
cannot beat ``1 / (1/teacher-only + 1/student-only - 1/inputs-only)`` img/s on this machine: the benchmark
prints that bound, its ratio to the reference and the share of it calikd reaches.
Loops run in ``--rounds`` interleaved rounds (each process waits while the other works); the best round
counts and ratios are taken against the reference of the same run. Kernel (system) time per 1,000 images is
printed next to img/s: it shows the allocator's page faults.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

BATCH = 128
USER_OMP = os.environ.get("OMP_WAIT_POLICY")  # before calikd (imported later) sets it


def _setup(args: argparse.Namespace):
    import calikd  # noqa: F401  (first: it sets the process up before torch starts, unless told not to)

    # isort: split
    import torch

    from calikd.data import ArrayDataset, load_dataset
    from calikd.models import create_model

    splits = load_dataset("fashion-mnist")
    n = min(args.samples, len(splits.train))
    data = ArrayDataset(splits.train.images[:n], splits.train.labels[:n])
    torch.manual_seed(0)
    teacher = create_model(args.teacher_model, 10, 1).eval().requires_grad_(False)
    return torch, splits, data, teacher


def reference_worker(args: argparse.Namespace) -> None:
    """The plain loop, in a process calikd did not tune."""
    torch, splits, data, teacher = _setup(args)
    import torch.nn.functional as F
    from interleave import serve

    from calikd._startup import tune_process
    from calikd.data import BatchLoader, build_train_transform
    from calikd.models import create_model
    from calikd.utils.seed import make_generator

    torch.manual_seed(1)
    student = create_model(args.student, 10, 1)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    transform = build_train_transform(splits.info)
    loader = BatchLoader(data, BATCH, shuffle=True, seed=0, drop_last=True)
    t = 4.0

    def run() -> int:
        student.train()
        gen = make_generator(0)
        seen = 0
        for images, labels in loader:
            x = transform(images, gen)
            logits_s = student(x)
            with torch.no_grad():
                logits_t = teacher(x)
            kd = F.kl_div(F.log_softmax(logits_s / t, 1), F.softmax(logits_t / t, 1), reduction="batchmean")
            loss = 0.1 * F.cross_entropy(logits_s, labels) + 0.9 * kd * t * t
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(labels)
        return seen

    serve({"reference": run}, {**tune_process(), "omp_env": os.environ.get("OMP_WAIT_POLICY")})


def calikd_worker(args: argparse.Namespace) -> None:
    """calikd's loop with its measured paths, with and without the cache, and the student alone."""
    torch, splits, data, teacher = _setup(args)
    from interleave import serve

    from calikd._startup import tune_process
    from calikd.augment import AugmentConfig
    from calikd.data import BatchLoader
    from calikd.distill import create_distiller, distill_one_epoch
    from calikd.distill.cache import TeacherLogitCache
    from calikd.distill.inputs import DistillInputs
    from calikd.engine.frozen import prepare_frozen
    from calikd.engine.optim import build_optimizer, build_scheduler
    from calikd.engine.precision import select_precision
    from calikd.models import create_model
    from calikd.utils.seed import make_generator

    device = torch.device("cpu")
    inputs = DistillInputs(splits.info, kd_augment=AugmentConfig())
    full_batches = args.run_epochs * (len(splits.train) // BATCH)
    choice = select_precision(
        "auto",
        device,
        create_model(args.student, 10, 1),
        input_shape=(1, 28, 28),
        num_classes=10,
        batch_size=BATCH,
        total_steps=full_batches,
        model_key={"name": args.student, "kwargs": {}},
    )
    precision = choice.precision
    if precision.channels_last:
        teacher.to(memory_format=torch.channels_last)
    example = inputs.teacher_eval(data.images[:BATCH])
    runner = prepare_frozen(
        teacher,
        example,
        precision=precision,
        device=device,
        batches=full_batches,
        model_key={"name": args.teacher_model, "kwargs": {}},
    )
    tmp = tempfile.mkdtemp(prefix="calikd-bench-")

    def make(method: str, cached: bool):
        torch.manual_seed(1)
        student = create_model(args.student, 10, 1)
        distiller = create_distiller(method, student, teacher)
        distiller.teacher_runner = runner
        if precision.channels_last:
            distiller.to(memory_format=torch.channels_last)
        optimizer = build_optimizer(distiller, "sgd", lr=0.05)
        loader = BatchLoader(data, BATCH, shuffle=True, seed=0, drop_last=True, with_indices=True)
        scheduler = build_scheduler(optimizer, "constant", epochs=1000, steps_per_epoch=len(loader))
        cache = None
        if cached:
            cache = TeacherLogitCache.open(
                Path(tmp),
                {"benchmark": "distill_speed", "path": runner.name, "precision": precision.name},
                static=False,
                num_samples=len(data),
                num_classes=10,
                rows_per_epoch=len(loader) * BATCH,
            )

        def run() -> int:
            if cache is not None:
                cache.start_epoch(1)
            loader.set_epoch(1)
            stats = distill_one_epoch(
                distiller,
                loader,
                inputs,
                optimizer,
                scheduler,
                generator=make_generator(0),
                device=device,
                precision=precision,
                cache=cache,
                show_progress=False,
            )
            if cache is not None:
                cache.end_epoch()
            return round(stats["images_per_s"] * stats["seconds"])

        if cache is not None:
            run()  # fills the cache: later rounds read it
        return run

    def teacher_alone(forward: bool):
        """Batches drawn and augmented, then the teacher's forward on its chosen path (or nothing)."""
        loader = BatchLoader(data, BATCH, shuffle=True, seed=0, drop_last=True)

        def run() -> int:
            loader.set_epoch(1)
            gen, seen = make_generator(0), 0
            for images, labels in loader:
                x = inputs.train_step(images, labels, gen).teacher
                if precision.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                if forward:
                    with torch.inference_mode(), precision.autocast(device):
                        runner(x)
                seen += len(labels)
            return seen

        return run

    loops = {
        "calikd": make("kd", False),
        "calikd+cache": make("kd", True),
        "student-only": make("ce", False),
        "teacher-only": teacher_alone(True),
        "inputs-only": teacher_alone(False),
    }
    info = {**tune_process(), "precision": choice.line(), "teacher": runner.line()}
    serve(loops, info)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--teacher-model", default="resnet20")
    parser.add_argument("--student", default="cnn")
    parser.add_argument("--samples", type=int, default=7680, help="training images per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--run-epochs", type=int, default=30, help="run length the calikd paths are chosen for"
    )
    parser.add_argument("--worker", choices=("reference", "calikd"), help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    if args.worker == "reference":
        return reference_worker(args)
    if args.worker == "calikd":
        return calikd_worker(args)

    from interleave import Worker, best_rate, run_rounds

    from calikd.engine.probe_cache import cpu_model

    script = str(Path(__file__).resolve())
    common = [
        "--teacher-model", args.teacher_model, "--student", args.student,
        "--samples", str(args.samples), "--run-epochs", str(args.run_epochs),
    ]  # fmt: skip
    user_env = {"OMP_WAIT_POLICY": USER_OMP}  # the reference runs as the user's shell would run it
    probes = str(Path(tempfile.mkdtemp(prefix="calikd-probes-")) / "probes.json")  # measured in this run
    workers = [
        Worker(
            "reference",
            [script, *common, "--worker", "reference"],
            {"CALIKD_TUNE_PROCESS": "0", **user_env},
            ["reference"],
        ),
        Worker(
            "calikd",
            [script, *common, "--worker", "calikd"],
            {"CALIKD_PROBE_CACHE": probes},
            ["calikd", "calikd+cache", "student-only", "teacher-only", "inputs-only"],
        ),
    ]
    results = run_rounds(workers, args.rounds)
    import torch

    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}")
    for worker in workers:
        print(f"{worker.name} process: {json.dumps(worker.info)}")
    print(
        f"{args.teacher_model} -> {args.student}, {args.samples} images per round, batch {BATCH}, "
        f"best of {args.rounds}"
    )
    best = {name: best_rate(passes) for name, passes in results.items()}
    ref, alone = best["reference"][0], best["student-only"][0]
    print(f"{'loop':<14}{'img/s':>9}{'sys s/1k img':>14}{'x reference':>13}{'x student-only':>16}")
    for name, (rate, sys_s) in best.items():
        print(f"{name:<14}{rate:>9.0f}{sys_s:>14.3f}{rate / ref:>13.2f}{rate / alone:>16.2f}")
    # a step draws its batch, runs the teacher's forward, then the student's step: both timed loops draw
    # the batches, so per image the KD loop needs at least teacher + student - inputs seconds
    per_image = 1.0 / best["teacher-only"][0] + 1.0 / alone - 1.0 / best["inputs-only"][0]
    bound = 1.0 / per_image
    print(
        f"sequential bound (teacher-only + student-only - inputs-only): {bound:.0f} img/s = "
        f"{bound / ref:.2f}x reference; calikd reaches {best['calikd'][0] / bound:.2f} of it"
    )
    if args.out:
        Path(args.out).write_text(
            json.dumps(
                {"cpu": cpu_model(), "workers": {w.name: w.info for w in workers}, "passes": results},
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
