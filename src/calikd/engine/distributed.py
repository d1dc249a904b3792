"""Data-parallel training under ``torchrun``: the process group, sharding, and reductions across ranks.

``torchrun --nproc_per_node=N -m calikd train-teacher|distill ...`` starts N processes; the CLI opens the
process group with :func:`distributed_session` (gloo on CPU, NCCL on CUDA, one GPU per local rank) and the
trainers pick it up with :meth:`Distributed.current`. A Python caller that opened its own process group
gets the same behaviour. What every rank does:

* trains its slice of every *global* batch (``batch_size`` is global; each rank takes
  ``batch_size / world_size`` rows of the same shuffled order), so the sampled batches equal a
  single-process run's;
* evaluates a contiguous shard of val/test and gathers the logits, so accuracy, NLL, ECE and ACE come from
  all samples, identical on every rank (:meth:`Distributed.gather_rows`);
* draws augmentation from its own stream (``derive_seed(seed, ..., "rank", r)``);
* leaves progress bars, log lines, checkpoints and reports to rank 0 (:attr:`Distributed.is_main`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from calikd.errors import ConfigError
from calikd.utils.device import resolve_device

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"environment variable {name}={text!r} is not an integer") from None


@dataclass(frozen=True)
class Distributed:
    """This process's place in a data-parallel job (``world_size`` 1: a plain single-process run)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def current(cls) -> Distributed:
        """The open default process group's view, or a single process when none is open."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
        return cls()

    @property
    def enabled(self) -> bool:
        """Whether more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that shows progress, logs and writes files."""
        return self.rank == 0

    def seed_parts(self) -> tuple[int | str, ...]:
        """Extra parts for :func:`~calikd.utils.seed.derive_seed` giving each rank its own random stream
        (empty for a single process, so its streams are those of a run without DDP)."""
        return ("rank", self.rank) if self.enabled else ()

    def device(self, requested: str | torch.device) -> torch.device:
        """The device this rank trains on: ``cuda`` becomes ``cuda:<local rank>`` under DDP."""
        device = resolve_device(requested)
        if self.enabled and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def shard(self, n: int) -> tuple[int, int]:
        """``[lo, hi)`` of this rank's contiguous share of ``n`` items (shares differ by at most one)."""
        return n * self.rank // self.world_size, n * (self.rank + 1) // self.world_size

    # ---------------------------------------------------------------- collectives
    def _comm_device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")

    def barrier(self) -> None:
        """Wait for every rank (no-op for a single process)."""
        if self.enabled:
            dist.barrier()

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of ``tensor`` over ranks (a new tensor on ``tensor``'s device)."""
        if not self.enabled:
            return tensor.clone()
        out = tensor.detach().to(self._comm_device(), copy=True)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out.to(tensor.device)

    def gather_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's ``tensor`` concatenated along dim 0 in rank order; the row counts may differ."""
        if not self.enabled:
            return tensor
        comm = self._comm_device()
        local = tensor.detach().to(comm).contiguous()
        count = torch.tensor([local.shape[0]], dtype=torch.int64, device=comm)
        counts = [torch.zeros_like(count) for _ in range(self.world_size)]
        dist.all_gather(counts, count)
        sizes = [int(c.item()) for c in counts]
        longest = max(sizes)
        if longest == 0:
            return tensor
        padded = local.new_zeros((longest, *local.shape[1:]))
        padded[: local.shape[0]] = local
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded)
        return torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)]).to(tensor.device)

    def broadcast_buffers(self, module: nn.Module, *, skip_prefix: str | None = None) -> None:
        """Copy rank 0's buffers (batch-norm running statistics) to every rank, so all evaluate one model;
        buffers whose names start with ``skip_prefix`` (a frozen teacher's) are left alone."""
        if not self.enabled:
            return
        comm = self._comm_device()
        for name, buffer in module.named_buffers():
            if skip_prefix and name.startswith(skip_prefix):
                continue
            moved = buffer.data.to(comm)
            dist.broadcast(moved, src=0)
            buffer.data.copy_(moved)

    def agree(self, value: int) -> bool:
        """Whether every rank passed the same integer (e.g. a checkpoint's epoch before resuming)."""
        if not self.enabled:
            return True
        mine = torch.tensor([value], dtype=torch.int64, device=self._comm_device())
        low, high = mine.clone(), mine.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        return bool(low.item() == high.item())

    def broadcast_int(self, value: int) -> int:
        """Rank 0's ``value`` on every rank (e.g. a choice only rank 0 measured)."""
        if not self.enabled:
            return int(value)
        out = torch.tensor([int(value)], dtype=torch.int64, device=self._comm_device())
        dist.broadcast(out, src=0)
        return int(out.item())

    # ---------------------------------------------------------------- models
    def wrap(self, module: nn.Module, device: torch.device, *, ignore_prefix: str | None = None) -> nn.Module:
        """``module`` under :class:`~torch.nn.parallel.DistributedDataParallel` (itself for one process).

        Parameters and buffers whose names start with ``ignore_prefix`` (a frozen teacher) are neither
        synchronised nor broadcast: the teacher is loaded identically on every rank and has no gradients.
        """
        if not self.enabled:
            return module
        if ignore_prefix:
            names = [n for n, _ in module.named_parameters() if n.startswith(ignore_prefix)]
            names += [n for n, _ in module.named_buffers() if n.startswith(ignore_prefix)]
            nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, names)
        device_ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)


def sync_batch_norm(
    module: nn.Module, enabled: bool, runtime: Distributed, device: torch.device
) -> nn.Module:
    """``module`` with batch-norm layers synchronised across ranks when asked (CUDA only), else as it is."""
    if not enabled or not runtime.enabled:
        return module
    if device.type != "cuda":
        raise ConfigError(
            "sync_bn needs CUDA: torch's SyncBatchNorm does not run on the CPU",
            hint="leave --sync-bn off on CPU (each rank then normalises its own share of the batch)",
        )
    return nn.SyncBatchNorm.convert_sync_batchnorm(module)


def launched_by_torchrun() -> bool:
    """Whether the environment describes a multi-process job (``WORLD_SIZE`` > 1, as torchrun sets)."""
    return _env_int("WORLD_SIZE", 1) > 1


@contextlib.contextmanager
def distributed_session(device: str = "auto") -> Iterator[Distributed]:
    """Open the default process group when launched by torchrun (gloo on CPU, NCCL on CUDA), yield this
    rank's :class:`Distributed`, and close the group on exit after a barrier (a single process: no-op)."""
    if not launched_by_torchrun() or (dist.is_available() and dist.is_initialized()):
        yield Distributed.current()
        return
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; run on one process")
    missing = [k for k in ENV_KEYS if k not in os.environ]
    if missing:
        raise ConfigError(
            f"WORLD_SIZE is set but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not",
            hint="launch with torchrun (it sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT)",
        )
    local_rank = _env_int("LOCAL_RANK", 0)
    cuda = resolve_device(device).type == "cuda"
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"local rank {local_rank} has no GPU: this node has {torch.cuda.device_count()}",
                hint="set --nproc_per_node to at most the number of GPUs per node",
            )
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    runtime = Distributed.current()
    failed = False
    try:
        yield runtime
    except BaseException:
        failed = True  # another rank may be waiting in a collective: no barrier, just leave
        raise
    finally:
        if not failed:
            runtime.barrier()
        dist.destroy_process_group()
