"""Checkpoint store: safetensors weights + JSON metadata, SHA-256 verified, atomic, never unpickled.

Files of a checkpoint with stem ``S`` (see :mod:`calikd.store.checkpoint`)::

    S.safetensors        model weights (state_dict)
    S.json               metadata: format, format_version, calikd_version, model {name, kwargs}, num_classes,
                         in_channels, dataset, normalization, input_size, epoch, metrics, ..., weights_sha256
    S.state.safetensors  optional training state for exact resume (optimizer, scheduler, RNG, scaler, ...)
    S.state.json         its skeleton (see :mod:`calikd.store.tensor_tree`)

Run-folder convention (``read_checkpoint(run_dir)`` and ``load_model(run_dir)`` load ``last``)::

    <run>/last.*   end of the last finished epoch, with training state: resume from here
    <run>/best.*   weights of the best epoch on the validation set (usually without training state)

Converting torch.save files
---------------------------
calikd refuses pickle / ``torch.save`` files (``.pt``, ``.pth``, ...) because unpickling runs arbitrary code.
To convert a file you trust, load it yourself in a trusted, sandboxed environment -- with torch's loader and
``weights_only=True`` -- then call ``calikd.store.save_checkpoint(stem, state_dict, meta)`` with ``meta``
holding at least ``model`` ({"name": ..., "kwargs": {...}}), ``num_classes`` and ``in_channels``.
"""

from calikd.store.checkpoint import (
    BEST,
    LAST,
    Checkpoint,
    CheckpointPaths,
    checkpoint_id,
    read_checkpoint,
    read_meta,
    save_checkpoint,
)
from calikd.store.loading import load_model, load_state_into
from calikd.store.preprocessing import (
    Preprocessing,
    checkpoint_dataset,
    checkpoint_preprocessing,
    per_channel,
)
from calikd.store.tensor_tree import pack_tree, unpack_tree
from calikd.utils.hashing import file_sha256

__all__ = [
    "BEST",
    "LAST",
    "Checkpoint",
    "CheckpointPaths",
    "Preprocessing",
    "checkpoint_dataset",
    "checkpoint_id",
    "checkpoint_preprocessing",
    "file_sha256",
    "load_model",
    "load_state_into",
    "pack_tree",
    "per_channel",
    "read_checkpoint",
    "read_meta",
    "save_checkpoint",
    "unpack_tree",
]
