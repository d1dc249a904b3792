"""Batches of an in-memory :class:`ArrayDataset` with plain tensor indexing (no DataLoader workers).

The shuffling order of an epoch is a function of ``(seed, epoch)`` only: a CPU ``torch.Generator`` seeded
with ``derive_seed(seed, "shuffle", epoch)`` draws the permutation, so it is the same on every device and a
run resumed at epoch ``e`` (and batch ``b``, via ``set_epoch(e, start_batch=b)``) sees exactly the batches
an uninterrupted run would. Call :meth:`BatchLoader.set_epoch` at the start of every epoch.

Under data-parallel training (``world_size`` > 1) ``batch_size`` is the *global* batch: every rank walks
the same order and takes its own ``batch_size / world_size`` rows of each batch, so together the ranks see
exactly the batches of a single-process run.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator

import torch

from calikd.data.dataset import ArrayDataset
from calikd.errors import ConfigError
from calikd.utils.seed import derive_seed


class BatchLoader:
    """Iterate ``dataset`` in batches of ``(images uint8, labels int64)`` on ``device``; with
    ``with_indices=True`` batches are ``(images, labels, indices)`` with the samples' dataset indices.
    ``rank`` / ``world_size`` select this process's share of every (global) batch; see the module docstring.

    The whole dataset is copied to ``device`` once, on the first iteration (a no-op on the CPU).
    """

    def __init__(
        self,
        dataset: ArrayDataset,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
        device: torch.device | str = "cpu",
        with_indices: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not isinstance(dataset, ArrayDataset):
            raise ConfigError(f"BatchLoader needs an ArrayDataset, got {type(dataset).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
        for name, value in (("world_size", world_size), ("rank", rank)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ConfigError(f"{name} must be a non-negative integer, got {value!r}")
        if world_size < 1 or rank >= world_size:
            raise ConfigError(f"rank {rank} is not within a world of {world_size} processes")
        if world_size > 1 and (batch_size % world_size or not drop_last):
            raise ConfigError(
                f"batch_size {batch_size} cannot be split evenly over {world_size} processes"
                if batch_size % world_size
                else "data-parallel batches need drop_last=True (a short last batch cannot be split evenly)",
                hint="choose a batch size that is a multiple of the number of processes",
            )
        self.rank, self.world_size = int(rank), int(world_size)
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.device = torch.device(device)
        self.with_indices = bool(with_indices)
        self.epoch = 0
        self.start_batch = 0
        self._on_device: tuple[torch.Tensor, torch.Tensor] | None = None

    def set_epoch(self, epoch: int, *, start_batch: int = 0) -> None:
        """Select the epoch whose order the next pass follows, starting at batch ``start_batch`` (resume)."""
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
            raise ConfigError(f"epoch must be a non-negative integer, got {epoch!r}")
        if isinstance(start_batch, bool) or not isinstance(start_batch, numbers.Integral) or start_batch < 0:
            raise ConfigError(f"start_batch must be a non-negative integer, got {start_batch!r}")
        self.epoch = int(epoch)
        self.start_batch = int(start_batch)

    @property
    def local_batch_size(self) -> int:
        """Rows of each batch this process gets (``batch_size`` for a single process)."""
        return self.batch_size // self.world_size

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self, epoch: int | None = None) -> torch.Tensor:
        """Sample indices (CPU int64) in the order epoch ``epoch`` (default: the current one) visits them."""
        n = len(self.dataset)
        if not self.shuffle:
            return torch.arange(n, dtype=torch.int64)
        gen = torch.Generator(device="cpu")
        gen.manual_seed(derive_seed(self.seed, "shuffle", self.epoch if epoch is None else epoch))
        return torch.randperm(n, generator=gen)

    def _tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._on_device is None:
            images, labels = self.dataset.images, self.dataset.labels
            if self.device.type != "cpu":
                images = images.to(self.device, non_blocking=True)
                labels = labels.to(self.device, non_blocking=True)
            self._on_device = (images, labels)
        return self._on_device

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        images, labels = self._tensors()
        start_batch, self.start_batch = self.start_batch, 0  # a resume offset applies to one pass only
        order = self.order().to(images.device) if self.shuffle else None
        bs, local = self.batch_size, self.local_batch_size
        for b in range(start_batch, len(self)):
            start = b * bs + self.rank * local  # this rank's rows of global batch b
            end = min(start + local, (b + 1) * bs, len(labels))
            if order is None:  # views into the dataset: do not modify them in place
                batch = (images[start:end], labels[start:end])
                idx = torch.arange(start, end, device=images.device) if self.with_indices else None
            else:
                idx = order[start:end]
                batch = (images.index_select(0, idx), labels.index_select(0, idx))
            yield (*batch, idx) if self.with_indices else batch
