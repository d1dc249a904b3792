"""One epoch of distillation: the student's and the teacher's inputs, the teacher's logits (from the cache
when it has them), the method's losses and the optimizer step."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from calikd.augment import augmix_js_loss
from calikd.data import BatchLoader
from calikd.distill.base import Distiller
from calikd.distill.cache import TeacherLogitCache
from calikd.distill.inputs import DistillInputs
from calikd.engine.distributed import Distributed
from calikd.engine.optim import backward_and_step
from calikd.engine.progress import progress_bar
from calikd.errors import TrainingDivergedError
from calikd.utils.device import Precision


def distill_one_epoch(
    distiller: Distiller,
    loader: BatchLoader,
    inputs: DistillInputs,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    generator: torch.Generator,
    device: torch.device,
    precision: Precision,
    cache: TeacherLogitCache | None = None,
    js_weight: float = 0.0,
    grad_clip: float | None = None,
    on_step: Callable[[], None] | None = None,
    desc: str = "distil",
    show_progress: bool = True,
    runtime: Distributed | None = None,
    wrapped: torch.nn.Module | None = None,
) -> dict[str, float]:
    """One pass over ``loader``; returns the mean of each loss, train accuracy and throughput.

    Under data-parallel training ``wrapped`` is the DDP-wrapped ``distiller`` (the forward pass goes through
    it), ``loader`` yields this rank's share of every batch, and the returned numbers are over all ranks.
    """
    runtime = runtime or Distributed()
    forward = wrapped if wrapped is not None else distiller
    distiller.train()
    params = distiller.trainable_parameters()
    sums: dict[str, torch.Tensor] = {}
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    start = time.perf_counter()
    with progress_bar(len(loader.dataset), desc, enabled=show_progress and runtime.is_main) as bar:
        for step_index, (images, labels, index) in enumerate(loader, start=loader.start_batch):
            distiller.set_step(step_index, len(loader))
            step = inputs.train_step(images, labels, generator)
            xs, xt = step.student, step.teacher
            if precision.channels_last:
                xs = xs.contiguous(memory_format=torch.channels_last)
                xt = xt.contiguous(memory_format=torch.channels_last)
            views_index = index.repeat(step.views) if step.views > 1 else index
            with precision.autocast(device):
                teacher_logits = None
                if cache is not None:
                    if seen == 0:
                        cache.check_first_batch(views_index, xt)
                    teacher_logits = cache.lookup(views_index, len(step.target))
                    if teacher_logits is None:
                        teacher_logits, _ = distiller.run_teacher(xt)
                        cache.store(views_index, teacher_logits)
                    else:
                        teacher_logits = teacher_logits.to(device, non_blocking=True)
                logits, losses = forward(
                    xs, step.target, teacher_x=xt, teacher_logits=teacher_logits, index=views_index
                )
            if step.views == 3 and js_weight > 0:
                losses["js"] = js_weight * augmix_js_loss(*logits.float().chunk(3))
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                parts = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
                raise TrainingDivergedError(f"distillation diverged: the loss is not finite ({parts})")
            backward_and_step(optimizer, losses, params, grad_clip)
            scheduler.step()
            n = len(labels)
            for name, value in losses.items():
                sums[name] = sums.get(name, torch.zeros((), dtype=torch.float64, device=device)) + (
                    value.detach().double() * n
                )
            correct += (logits.detach()[:n].argmax(1) == labels).sum()
            seen += n
            bar.update(n * runtime.world_size)
            if on_step is not None:
                on_step()
    elapsed = time.perf_counter() - start
    if runtime.enabled:
        sums = {name: runtime.sum(value) for name, value in sums.items()}
        correct, seen = runtime.sum(correct), seen * runtime.world_size
    stats = {f"loss_{k}": float(v) / max(seen, 1) for k, v in sums.items()}
    stats["loss"] = sum(stats.values())
    stats.update(
        accuracy=float(correct) / max(seen, 1), images_per_s=seen / max(elapsed, 1e-9), seconds=elapsed
    )
    return stats
