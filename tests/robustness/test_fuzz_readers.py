"""Fuzz harness (hypothesis) over calikd's file readers: damaged input gives calikd's own error, nothing else.

Each reader gets a valid file built here, which hypothesis then damages: truncation at any offset, flipped or
overwritten bytes, spliced-in or deleted bytes, header fields set to extreme values (sizes of 0, 2^31, 2^64,
negative numbers, wrong types in JSON headers, deep nesting), or an empty file. The reader must then either
return a valid result or raise a :class:`calikd.errors.CalikdError`; any other exception (IndexError,
ValueError, struct.error, an unwrapped OSError, numpy/torch/Pillow errors, MemoryError from a header that
claims gigabytes) is a bug in the reader, and so is a hang (pytest-timeout ends the run after 900 s).

Readers: IDX (``calikd.data.idx``, raw and gzip), CIFAR binary batches and folders (``calikd.data.cifar``),
single images of every format calikd reads and whole image-folder trees (``calikd.data.decode`` /
``image_folder``), checkpoints (``calikd.store``: safetensors weights and train state, JSON metadata, model
loading) and released "-C" folders (``calikd.data.corrupted.CorruptedSet``).

The default run is short and reproducible (derandomized: the same inputs every run, as CI needs):
``CALIKD_FUZZ_EXAMPLES`` examples per reader (default 60; x2 for the image decoder and the checkpoint
reader, x0.5 for the slower folder-level tests). A long session::

    CALIKD_FUZZ_EXAMPLES=20000 OMP_NUM_THREADS=1 pytest tests/robustness/test_fuzz_readers.py

and ``CALIKD_FUZZ_SEED=N`` draws another (reproducible) stream of inputs than the default one. A failure
prints the damaged input's recipe; hypothesis shrinks it to a small one first.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from PIL import Image

from calikd.data.cifar import (
    CIFAR10_CLASSES,
    CIFAR10_DIR,
    CIFAR10_TEST,
    CIFAR10_TRAIN,
    CIFAR100_COARSE,
    CIFAR100_DIR,
    CIFAR100_FINE,
    read_cifar_binary,
)
from calikd.data.corrupted import CorruptedSet
from calikd.data.decode import decode_cached, decode_images
from calikd.data.idx import read_idx, write_idx
from calikd.data.registry import BuildContext, get_spec
from calikd.errors import CalikdError
from calikd.models import create_model
from calikd.store import read_checkpoint, save_checkpoint
from calikd.store.checkpoint import Checkpoint
from calikd.store.loading import load_model

# damaged files make Pillow and numpy warn (TIFF tags past the end, a 100 M pixel header, a huge shape)
pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning:PIL"),
    pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
    pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),
]
EXAMPLES = int(os.environ.get("CALIKD_FUZZ_EXAMPLES", "60"))
SEED = os.environ.get("CALIKD_FUZZ_SEED")
F = TypeVar("F", bound=Callable[..., Any])


def fuzz(scale: float = 1.0) -> Callable[[F], F]:
    """Hypothesis settings of a fuzz test: ``scale * CALIKD_FUZZ_EXAMPLES`` examples, no deadline,
    derandomized (or seeded by ``CALIKD_FUZZ_SEED``), no example database."""

    def decorate(test: F) -> F:
        test = settings(
            max_examples=max(1, round(EXAMPLES * scale)),
            deadline=None,
            derandomize=SEED is None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )(test)
        return seed(int(SEED))(test) if SEED is not None else test

    return decorate


def calikd_error_or(call: Callable[[], Any]) -> Any:
    """``call()``'s result, or ``None`` when it raised a :class:`CalikdError` (which must say something).
    Any other exception propagates: the test fails and hypothesis reports the input."""
    try:
        return call()
    except CalikdError as exc:
        assert str(exc).strip()
        return None


@contextmanager
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="calikd-fuzz-") as tmp:
        yield Path(tmp)


# ---------------------------------------------------------------------------------------------- mutations
@dataclass(frozen=True)
class Field:
    """A binary header field: ``size`` bytes at ``offset``, ``order`` "big" or "little"."""

    offset: int
    size: int
    order: Literal["big", "little"] = "big"


def _extreme(draw: st.DrawFn, field: Field, current: int) -> int:
    top = (1 << (8 * field.size)) - 1
    choices = [0, 1, top, top - 1, 1 << (8 * field.size - 1), current + 1, max(current - 1, 0), current * 2]
    value = draw(st.sampled_from(choices) | st.integers(0, top))
    return min(max(value, 0), top)


@st.composite
def damaged(draw: st.DrawFn, data: bytes, fields: Sequence[Field] = ()) -> bytes:
    """``data`` after 1-4 random mutations (or empty)."""
    if draw(st.integers(0, 24)) == 0:
        return b""
    out = bytearray(data)
    ops = ["truncate", "flip", "overwrite", "insert", "delete", "append"] + ["field"] * (3 if fields else 0)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(ops))
        pos = draw(st.integers(0, max(len(out) - 1, 0)))
        if op == "truncate":
            del out[draw(st.integers(0, len(out))) :]
        elif op == "flip" and out:
            out[pos] ^= draw(st.integers(1, 255))
        elif op == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16))
            out[pos : pos + len(chunk)] = chunk
        elif op == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del out[pos : pos + draw(st.integers(1, 64))]
        elif op == "append":
            out += draw(st.binary(min_size=1, max_size=64))
        elif op == "field":
            f = draw(st.sampled_from(fields))
            if f.offset + f.size <= len(out):
                current = int.from_bytes(out[f.offset : f.offset + f.size], f.order)
                value = _extreme(draw, f, current)
                out[f.offset : f.offset + f.size] = value.to_bytes(f.size, f.order)
    return bytes(out)


_DEEP = "\u2063deep\u2063"  # stands for 100 000 nested lists once serialised
JSON_EXTREMES: list[Any] = [
    0, -1, 1, 2**31, 2**63, 2**64 + 1, 10**40, -(10**40), 1e308, -1e308, 0.5, "", "x", "\x00", None,
    True, False, [], {}, [1, 2], {"a": 1}, [[[[]]]], [-1], [2**40, 2**40], [0, 2**64], [2**62, 2**62], _DEEP,
    "F4", "F6_E2M3", "F8_E8M0", "F8_E4M3", "C64", "U64", "BOOL", "F64", "nan", "OrderedDict", "tuple",
]  # fmt: skip


def _paths(node: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*path, i))
    return out


@st.composite
def damaged_json(draw: st.DrawFn, doc: Any) -> bytes:
    """``doc`` with 1-3 nodes replaced by extreme values or removed, serialised."""
    doc = json.loads(json.dumps(doc))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        value = copy.deepcopy(draw(st.sampled_from(JSON_EXTREMES)))
        if not path:
            doc = value
            continue
        parent = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
            if draw(st.integers(0, 5)) == 0 and isinstance(parent, dict):
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier replacement removed that path
    text = json.dumps(doc)
    return text.replace(json.dumps(_DEEP), "[" * 100_000 + "]" * 100_000).encode()


# ---------------------------------------------------------------------------------------------------- IDX
IDX_IMAGES = write_idx(np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5))
IDX_LABELS = write_idx(np.array([0, 1, 9], dtype=np.uint8))
IDX_FIELDS = [Field(0, 4), Field(2, 1), Field(3, 1), Field(4, 4), Field(8, 4), Field(12, 4)]


@fuzz()
@given(
    st.sampled_from([IDX_IMAGES, IDX_LABELS]).flatmap(lambda d: damaged(d, IDX_FIELDS)),
    st.booleans(),
    st.sampled_from([None, 1, 3]),
)
def test_idx_reader(data: bytes, gzipped: bool, ndim: int | None) -> None:
    with folder() as tmp:
        path = tmp / ("x-idx3-ubyte.gz" if gzipped else "x-idx3-ubyte")
        path.write_bytes(gzip.compress(data, mtime=0) if gzipped else data)
        array = calikd_error_or(lambda: read_idx(path, expected_ndim=ndim))
    if array is not None:
        assert array.dtype == np.uint8 and array.nbytes == len(data) - 4 - 4 * array.ndim
        assert ndim is None or array.ndim == ndim


@fuzz(0.5)
@given(st.binary(max_size=200).map(lambda d: b"\x1f\x8b" + d) | damaged(gzip.compress(IDX_IMAGES, mtime=0)))
def test_idx_reader_on_damaged_gzip(data: bytes) -> None:
    with folder() as tmp:
        (tmp / "x.gz").write_bytes(data)
        calikd_error_or(lambda: read_idx(tmp / "x.gz"))


def test_idx_header_claiming_exabytes_is_refused_before_any_allocation() -> None:
    # 4 dimensions of 2^32 - 1 overflow int64 (a silent wrap-around in numpy's product)
    data = bytes([0, 0, 8, 4]) + b"\xff\xff\xff\xff" * 4 + b"\x00" * 8
    with folder() as tmp:
        (tmp / "x").write_bytes(data)
        with pytest.raises(CalikdError, match="truncated: expected 3402823" + r"\d+ bytes of data, found 8"):
            read_idx(tmp / "x")


# -------------------------------------------------------------------------------------------------- CIFAR
def _cifar_records(count: int, label_bytes: int, seed_: int = 0) -> bytes:
    rng = np.random.default_rng(seed_)
    labels = rng.integers(0, 10, size=(count, label_bytes), dtype=np.uint8)
    pixels = rng.integers(0, 256, size=(count, 3072), dtype=np.uint8)
    return np.concatenate([labels, pixels], axis=1).tobytes()


@fuzz()
@given(st.sampled_from([1, 2]).flatmap(lambda lb: st.tuples(st.just(lb), damaged(_cifar_records(2, lb)))))
def test_cifar_binary_reader(case: tuple[int, bytes]) -> None:
    label_bytes, data = case
    with folder() as tmp:
        (tmp / "data_batch_1.bin").write_bytes(data)
        result = calikd_error_or(lambda: read_cifar_binary(tmp / "data_batch_1.bin", label_bytes=label_bytes))
    if result is not None:
        images, labels = result
        assert images.shape == (len(data) // (3072 + label_bytes), 3, 32, 32) and images.dtype == np.uint8
        assert labels.shape == (len(images), label_bytes)


def _cifar10_files() -> dict[str, bytes]:
    files = {name: _cifar_records(1 + i % 2, 1, i) for i, name in enumerate((*CIFAR10_TRAIN, CIFAR10_TEST))}
    files["batches.meta.txt"] = ("\n".join(CIFAR10_CLASSES) + "\n\n").encode()
    return files


def _cifar100_files() -> dict[str, bytes]:
    rng = np.random.default_rng(1)
    out = {}
    for split, count in (("train", 3), ("test", 2)):
        labels = np.stack([rng.integers(0, 20, count), rng.integers(0, 100, count)], 1).astype(np.uint8)
        out[f"{split}.bin"] = np.concatenate(
            [labels, rng.integers(0, 256, (count, 3072), np.uint8)], 1
        ).tobytes()
    out["fine_label_names.txt"] = "\n".join(CIFAR100_FINE).encode()
    out["coarse_label_names.txt"] = "\n".join(CIFAR100_COARSE).encode()
    return out


CIFAR_TREES = {
    "cifar10": (CIFAR10_DIR, _cifar10_files()),
    "cifar100-coarse": (CIFAR100_DIR, _cifar100_files()),
}


@st.composite
def damaged_tree(draw: st.DrawFn, files: dict[str, bytes], fields: dict[str, Sequence[Field]] | None = None):
    """``files`` with one of them damaged (or removed)."""
    name = draw(st.sampled_from(sorted(files)))
    out = dict(files)
    if draw(st.integers(0, 15)) == 0:
        del out[name]
    else:
        out[name] = draw(damaged(files[name], (fields or {}).get(Path(name).suffix, ())))
    return out


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


@fuzz(0.5)
@given(
    st.sampled_from(sorted(CIFAR_TREES)).flatmap(
        lambda name: st.tuples(st.just(name), damaged_tree(CIFAR_TREES[name][1]))
    )
)
def test_cifar_dataset_folder(case: tuple[str, dict[str, bytes]]) -> None:
    name, files = case
    spec = get_spec(name)
    with folder() as tmp:
        _write_tree(tmp / CIFAR_TREES[name][0], files)
        ctx = BuildContext(spec=spec, data_dir=tmp, download=False)
        raw = calikd_error_or(lambda: spec.builder(ctx, strict_counts=False))
    if raw is not None:
        assert raw.train.images.dtype == torch.uint8 and raw.train.images.shape[1:] == (3, 32, 32)
        assert len(raw.train) and int(raw.train.labels.max()) < raw.info.num_classes


# ------------------------------------------------------------------------------------------------- images
def _image(mode: str, fmt: str, size: tuple[int, int] = (6, 5), **kwargs: Any) -> bytes:
    rng = np.random.default_rng(len(fmt) + len(mode))
    shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(buf, fmt, **kwargs)
    return buf.getvalue()


def _jpeg_fields(data: bytes) -> list[Field]:
    sof = data.find(b"\xff\xc0")
    return [Field(sof + 5, 2), Field(sof + 7, 2), Field(sof + 9, 1)] if sof >= 0 else []


IMAGES: dict[str, tuple[bytes, list[Field]]] = {
    "rgb.png": (_image("RGB", "PNG"), [Field(16, 4), Field(20, 4), Field(24, 1), Field(25, 1)]),
    "gray.png": (_image("L", "PNG"), [Field(16, 4), Field(20, 4), Field(24, 1), Field(25, 1)]),
    "rgb.jpg": (_image("RGB", "JPEG"), _jpeg_fields(_image("RGB", "JPEG"))),
    "gray.jpeg": (_image("L", "JPEG", progressive=True), _jpeg_fields(_image("L", "JPEG", progressive=True))),
    "rgb.ppm": (_image("RGB", "PPM"), []),
    "gray.pgm": (_image("L", "PPM"), []),
    "rgb.bmp": (
        _image("RGB", "BMP"),
        [Field(18, 4, "little"), Field(22, 4, "little"), Field(28, 2, "little")],
    ),
    "gray.gif": (_image("L", "GIF"), [Field(6, 2, "little"), Field(8, 2, "little")]),
    "rgb.tiff": (_image("RGB", "TIFF"), []),
    "rgb.webp": (_image("RGB", "WEBP", lossless=True), []),
}
PNM_TOKENS = ["0", "-1", "1", "99999999", "65536", "4294967296", "70000", "1e9", "", "x", "256", "65535"]


def _fix_png_crcs(data: bytes) -> bytes:
    """Recompute every chunk's CRC, so that a damaged header field reaches the decoder."""
    import zlib

    out, pos = bytearray(data[:8]), 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        end = pos + 8 + length
        if end + 4 > len(data):
            out += data[pos:]
            return bytes(out)
        body = data[pos + 4 : end]
        out += data[pos : pos + 4] + body + zlib.crc32(body).to_bytes(4, "big")
        pos = end + 4
    return bytes(out + data[pos:])


@st.composite
def damaged_image(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(IMAGES)))
    data, fields = IMAGES[name]
    if name.endswith((".ppm", ".pgm")) and draw(st.booleans()):  # text header: width, height, maxval
        magic, width, height, maxval, pixels = data.split(maxsplit=4)
        tokens = [width, height, maxval]
        tokens[draw(st.integers(0, 2))] = draw(st.sampled_from(PNM_TOKENS)).encode()
        data = b"\n".join([magic, *tokens, pixels])
    else:
        data = draw(damaged(data, fields))
    if name.endswith(".png") and draw(st.booleans()):
        data = _fix_png_crcs(data)
    return name, data


@fuzz(2)
@given(damaged_image(), st.sampled_from([None, 1, 3]), st.sampled_from([None, (4, 4)]))
def test_image_decoder(case: tuple[str, bytes], channels: int | None, size: tuple[int, int] | None) -> None:
    name, data = case
    with folder() as tmp:
        path = tmp / name
        path.write_bytes(data)
        images = calikd_error_or(lambda: decode_images([path], channels=channels, image_size=size, workers=1))
    if images is not None:
        assert images.dtype == np.uint8 and images.ndim == 4 and len(images) == 1
        assert channels is None or images.shape[1] == channels
        assert size is None or images.shape[2:] == size


def test_image_claiming_a_huge_size_is_refused_before_decoding() -> None:
    # a 6x5 PNG whose header claims 20000 x 5000 pixels (100 M, above Pillow's bomb limit of ~89 M)
    data = bytearray(IMAGES["rgb.png"][0])
    data[16:24] = (20000).to_bytes(4, "big") + (5000).to_bytes(4, "big")
    with folder() as tmp:
        (tmp / "big.png").write_bytes(_fix_png_crcs(bytes(data)))
        with pytest.raises(CalikdError, match=r"big\.png.*5000x20000.*100000000 pixels"):
            decode_images([tmp / "big.png"], workers=1)


def _image_tree() -> dict[str, bytes]:
    files = {}
    for split in ("train", "test", "val"):
        for cls, name in (("cat", "rgb.png"), ("cat", "gray.pgm"), ("dog", "rgb.jpg"), ("dog", "rgb.ppm")):
            files[f"{split}/{cls}/{split}-{name}"] = IMAGES[name][0]
    return files


IMAGE_TREE = _image_tree()


@fuzz(0.5)
@given(damaged_tree(IMAGE_TREE), st.sampled_from([None, 1, 3]), st.sampled_from([None, 5]))
def test_image_folder_dataset(files: dict[str, bytes], channels: int | None, size: int | None) -> None:
    spec = get_spec("imagefolder")
    with folder() as tmp:
        _write_tree(tmp / "data", files)
        ctx = BuildContext(spec=spec, data_dir=tmp / "data", download=False)
        options = {"in_channels": channels, "image_size": size, "cache_dir": str(tmp / "cache")}
        raw = calikd_error_or(lambda: spec.builder(ctx, **options))
    if raw is not None:
        assert raw.info.classes == ("cat", "dog") and raw.train.images.dtype == torch.uint8
        assert raw.test.images.shape[1:] == raw.train.images.shape[1:]


# ------------------------------------------------------------------------------------------- checkpoints
MODEL = {"name": "mlp", "kwargs": {"width": 4, "depth": 1, "input_size": 4}}


def _train_state() -> dict[str, Any]:
    return {
        "optimizer": {
            "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(4, 16)}},
            "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0, 1]}],
        },
        "epoch": 2,
        "best": float("nan"),
        "rng": torch.arange(8, dtype=torch.uint8),
        "order": OrderedDict(a=1, b=(2, 3)),
    }


@pytest.fixture(scope="module")
def checkpoint_files() -> dict[str, bytes]:
    model = create_model(MODEL["name"], num_classes=3, in_channels=1, **MODEL["kwargs"])
    with folder() as tmp:
        save_checkpoint(tmp / "ck", model, {"model": MODEL, "num_classes": 3, "in_channels": 1},
                        train_state=_train_state())  # fmt: skip
        return {p.name: p.read_bytes() for p in tmp.iterdir()}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _resign(files: dict[str, bytes]) -> dict[str, bytes]:
    """Record the (damaged) files' SHA-256s where the checkpoint expects them, so that the damage reaches the
    parsers behind the checksum: state weights -> state.json -> ck.json, weights -> ck.json."""
    try:
        state = json.loads(files["ck.state.json"])
        state["tensors_sha256"] = _sha(files["ck.state.safetensors"])
        files["ck.state.json"] = json.dumps(state).encode()
    except (ValueError, TypeError, RecursionError):
        pass  # the state metadata itself is damaged: leave it
    meta = json.loads(files["ck.json"])
    meta["weights_sha256"], meta["train_state_sha256"] = (
        _sha(files["ck.safetensors"]),
        _sha(files["ck.state.json"]),
    )
    files["ck.json"] = json.dumps(meta).encode()
    return files


def _safetensors_with_header(data: bytes, header: bytes) -> bytes:
    header += b" " * (-len(header) % 8)
    size = int.from_bytes(data[:8], "little")
    return len(header).to_bytes(8, "little") + header + data[8 + size :]


@st.composite
def damaged_checkpoint(draw: st.DrawFn, files: dict[str, bytes]) -> dict[str, bytes]:
    files = dict(files)
    target = draw(st.sampled_from(sorted(files)))
    how = draw(st.sampled_from(["bytes", "json"]))
    if how == "json" and target.endswith(".json"):
        files[target] = draw(damaged_json(json.loads(files[target])))
    elif how == "json":  # the safetensors header
        size = int.from_bytes(files[target][:8], "little")
        header = draw(damaged_json(json.loads(files[target][8 : 8 + size])))
        files[target] = _safetensors_with_header(files[target], header)
    else:
        files[target] = draw(
            damaged(files[target], [Field(0, 8, "little")] if target.endswith("tensors") else [])
        )
    if target != "ck.json" and draw(st.integers(0, 4)) > 0:
        files = _resign(files)
    return files


def _use_checkpoint(stem: Path) -> None:
    ckpt: Checkpoint = read_checkpoint(stem)
    assert all(isinstance(v, torch.Tensor) for v in ckpt.state_dict.values())
    ckpt.load_train_state()
    model, _ = load_model(stem)
    assert model(torch.zeros(2, 1, 4, 4)).shape == (2, 3)


@fuzz(2)
@given(st.data())
def test_checkpoint_reader(checkpoint_files: dict[str, bytes], data: st.DataObject) -> None:
    files = data.draw(damaged_checkpoint(checkpoint_files))
    with folder() as tmp:
        _write_tree(tmp, files)
        calikd_error_or(lambda: _use_checkpoint(tmp / "ck"))


@pytest.mark.parametrize(
    ("kwargs", "factory", "error"),
    [
        # a 2^40 x 4 first layer (16 TiB): more weights than the file holds, refused for a zoo model ...
        (
            {"input_size": 2**20},
            None,
            r"is damaged: its metadata asks for input_size=1048576, more than the 96",
        ),
        # ... and a depth of 2^63, which would take forever to build even without weights
        ({"depth": 2**63}, None, r"asks for depth=9223372036854775808"),
        # any factory: a dry run on the meta device finds the mismatch before anything is allocated
        # (2^19: within create_model's own bounds, a 2^38 x 4 first layer, 4 TiB)
        (
            {"input_size": 2**19},
            create_model,
            r"does not fit.*layer1\.linear\.weight \(4, 16\) in the checkpoint",
        ),
    ],
    ids=["zoo-input-size", "zoo-depth", "any-factory-dry-run"],
)
def test_metadata_claiming_a_huge_model_is_refused_before_building_it(
    checkpoint_files: dict[str, bytes], tmp_path: Path, kwargs: dict, factory: Any, error: str
) -> None:
    meta = json.loads(checkpoint_files["ck.json"])
    meta["model"]["kwargs"].update(kwargs)
    _write_tree(tmp_path, {**checkpoint_files, "ck.json": json.dumps(meta).encode()})
    with pytest.raises(CalikdError, match=error):
        load_model(tmp_path / "ck", factory=factory)


# ----------------------------------------------------------------------------------------- "-C" folders
def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


NPY_HEADERS = [
    "{'descr': '|O', 'fortran_order': False, 'shape': (10,), }",
    "{'descr': '<i8', 'fortran_order': False, 'shape': (4611686018427387904,), }",
    "{'descr': '|u1', 'fortran_order': False, 'shape': (4611686018427387904, 4, 4, 3), }",
    "{'descr': '|u1', 'fortran_order': False, 'shape': (-5, 4, 4, 3), }",
    "{'descr': '|u1', 'fortran_order': True, 'shape': (10, 4, 4, 3), }",
    "{'descr': '|u1', 'fortran_order': False, 'shape': (10, 4, 4, 3, 1, 1), }",
    "{'descr': '|u1', 'fortran_order': False, 'shape': (), }",
    "{'descr': [('a', '|u1')], 'fortran_order': False, 'shape': (10, 4, 4, 3), }",
    "{'descr': '<U3', 'fortran_order': False, 'shape': (10,), }",
    "{'descr': '|V0', 'fortran_order': False, 'shape': (10,), }",
    "{'descr': '|u1', 'shape': (10, 4, 4, 3), }",
    "{'descr': '|u1', 'fortran_order': False, 'shape': (10, 4, 4, 3), 'x': __import__('os'), }",
    "[1, 2, 3]",
    "{'descr': '|u1', 'fortran_order': False, 'shape': (10, 4, 4, 3)",
]


def _with_npy_header(data: bytes, header: str) -> bytes:
    text = header.encode("latin1")
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    length = int.from_bytes(data[8:10], "little")
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + data[10 + length :]


def _corrupted_files() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    return {
        "labels.npy": _npy(rng.integers(0, 10, 10).astype(np.int64)),
        "fog.npy": _npy(rng.integers(0, 256, (10, 4, 4, 3), dtype=np.uint8)),
        "snow.npy": _npy(rng.integers(0, 256, (5, 4, 4), dtype=np.uint8)),
    }


CORRUPTED = _corrupted_files()
NPY_FIELDS = {".npy": [Field(6, 1), Field(7, 1), Field(8, 2, "little")]}


@st.composite
def damaged_corrupted_set(draw: st.DrawFn) -> dict[str, bytes]:
    files = draw(damaged_tree(CORRUPTED, NPY_FIELDS))
    name = draw(st.sampled_from(sorted(CORRUPTED)))
    if name in files and draw(st.integers(0, 3)) == 0:
        files[name] = _with_npy_header(files[name], draw(st.sampled_from(NPY_HEADERS)))
    if draw(st.booleans()):  # calikd's own layout: a manifest with each file's SHA-256
        manifest = {"format": "calikd-corrupted-set/1", "files": {k: _sha(v) for k, v in files.items()}}
        files["manifest.json"] = draw(st.just(json.dumps(manifest).encode()) | damaged_json(manifest))
    return files


@fuzz()
@given(damaged_corrupted_set(), st.integers(1, 5))
def test_corrupted_set_folder(files: dict[str, bytes], severity: int) -> None:
    with folder() as tmp:
        _write_tree(tmp, files)

        def read() -> None:
            source = CorruptedSet(tmp)
            source.describe()
            for name in source.corruptions:
                split = source.load(name, severity)
                assert split.images.dtype == torch.uint8 and split.images.ndim == 4
                assert split.labels.dtype == torch.int64 and len(split.labels) == len(split.images)

        calikd_error_or(read)


# ------------------------------------------------------------------------------------ the decoded cache
CACHE_FILES = ("images.npy", "labels.npy", "meta.json")


@fuzz(0.5)
@given(st.sampled_from(CACHE_FILES), st.data())
def test_damaged_decode_cache_is_decoded_again(name: str, data: st.DataObject) -> None:
    with folder() as tmp:
        files = [tmp / "img" / "a.png", tmp / "img" / "b.jpg"]
        _write_tree(tmp / "img", {"a.png": IMAGES["rgb.png"][0], "b.jpg": IMAGES["rgb.jpg"][0]})
        kwargs = {"channels": None, "image_size": None, "cache_dir": tmp / "cache"}
        first = decode_cached("fuzz", "train", tmp / "img", files, [0, 1], **kwargs)
        entry = next((tmp / "cache" / "decoded").iterdir()) / name
        raw = entry.read_bytes()
        if name.endswith(".npy") and data.draw(st.booleans()):
            entry.write_bytes(_with_npy_header(raw, data.draw(st.sampled_from(NPY_HEADERS))))
        else:
            entry.write_bytes(data.draw(damaged(raw, NPY_FIELDS[".npy"] if name.endswith(".npy") else [])))
        # a damaged cache is not the user's fault: it is decoded again, never an error
        again = decode_cached("fuzz", "train", tmp / "img", files, [0, 1], **kwargs)
    assert again.images.shape == first.images.shape and again.images.dtype == torch.uint8
    assert again.labels.tolist() == [0, 1]


# ---------------------------------------------------------- what the fuzzer found, as plain regression tests
def test_empty_cifar_batch_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data_batch_1.bin").write_bytes(b"")
    with pytest.raises(CalikdError, match=r"data_batch_1\.bin is empty"):
        read_cifar_binary(tmp_path / "data_batch_1.bin")


@pytest.mark.parametrize(
    ("header", "error"),
    [(b"P6\n1e9\n5\n255\n", "cannot read image"), (b"P6\n6\n5\n0\n", "cannot (read|decode) image")],
    ids=["size-1e9", "maxval-0"],
)
def test_ppm_with_a_bad_header_is_a_data_error(tmp_path: Path, header: bytes, error: str) -> None:
    # Pillow raises ValueError (not OSError) for these
    (tmp_path / "x.ppm").write_bytes(header + bytes(90))
    with pytest.raises(CalikdError, match=error):
        decode_images([tmp_path / "x.ppm"], workers=1)


@pytest.mark.parametrize(
    "header",
    [
        "{'descr': '|u1', 'fortran_order': False, 'shape': (-5, 4, 4, 3), }",  # numpy: OverflowError
        "{'descr': '|u1', 'fortran_order': False, 'shape': (10, 4, 4, 3)",  # numpy: tokenize.TokenError
        "{'descr': '|u1', 'fortran_order': False, 'shape': (10, 4, 4, 3)}}",  # numpy: SyntaxError
    ],
    ids=["negative-shape", "unterminated", "unbalanced"],
)
def test_corrupted_set_with_a_damaged_npy_header_is_a_data_error(tmp_path: Path, header: str) -> None:
    _write_tree(tmp_path, {**CORRUPTED, "fog.npy": _with_npy_header(CORRUPTED["fog.npy"], header)})
    with pytest.raises(CalikdError, match=r"fog\.npy' is not a readable \.npy array"):
        CorruptedSet(tmp_path).load("fog", 1)


def test_corrupted_set_manifest_without_a_files_object_is_a_data_error(tmp_path: Path) -> None:
    manifest = {"format": "calikd-corrupted-set/1", "files": ["labels.npy"]}
    _write_tree(tmp_path, {**CORRUPTED, "manifest.json": json.dumps(manifest).encode()})
    with pytest.raises(CalikdError, match=r'manifest\.json\' has no "files" object'):
        CorruptedSet(tmp_path)


@pytest.mark.parametrize(
    ("state_json", "error"),
    [
        (b"\xfb{not json", "ck.state.json' is corrupt: invalid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "ck.state.json' is corrupt: invalid JSON"),
        ({"dict": 5}, r"malformed skeleton at root: unknown node \['dict'\]"),
        ({"dict": [], "type": []}, r"malformed skeleton at root: unknown node \['dict', 'type'\]"),
        ({"float": []}, r"malformed skeleton at root: unknown node \['float'\]"),
        ("[" * 20 + "0" + "]" * 20, None),  # fine
        ("[" * 700 + "0" + "]" * 700, "nested too deeply"),  # parses as JSON, too deep to rebuild
    ],
    ids=[
        "not-utf8",
        "json-too-deep",
        "dict-not-a-list",
        "type-not-a-string",
        "float-not-a-string",
        "20-levels",
        "700-levels",
    ],
)
def test_damaged_train_state_is_a_checkpoint_error(
    checkpoint_files: dict[str, bytes], tmp_path: Path, state_json: Any, error: str | None
) -> None:
    files = dict(checkpoint_files)
    doc = json.loads(files["ck.state.json"])
    doc["tree"] = "TREE"
    if isinstance(state_json, bytes):  # the whole file
        files["ck.state.json"] = state_json
    else:  # the skeleton: an object, or raw JSON text
        tree = state_json if isinstance(state_json, str) else json.dumps(state_json)
        files["ck.state.json"] = json.dumps(doc).replace('"TREE"', tree).encode()
    _write_tree(tmp_path, _resign(files))
    ckpt = read_checkpoint(tmp_path / "ck")
    if error is None:
        assert ckpt.load_train_state() == json.loads(state_json)
    else:
        with pytest.raises(CalikdError, match=error):
            ckpt.load_train_state()


def test_safetensors_header_nested_too_deeply_is_a_checkpoint_error(
    checkpoint_files: dict[str, bytes], tmp_path: Path
) -> None:
    deep = b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    weights = _safetensors_with_header(checkpoint_files["ck.safetensors"], deep)
    _write_tree(tmp_path, _resign({**checkpoint_files, "ck.safetensors": weights}))
    with pytest.raises(CalikdError, match="safetensors header is not valid JSON"):
        read_checkpoint(tmp_path / "ck")


def test_corrupted_set_with_a_zip_as_labels_is_a_data_error(tmp_path: Path) -> None:
    # np.load opens a file starting with a zip signature as an .npz archive (BadZipFile, or an NpzFile)
    buf = io.BytesIO()
    np.savez(buf, labels=np.zeros(10, np.int64))
    for labels in (buf.getvalue(), b"PK\x03\x04" + CORRUPTED["labels.npy"][4:]):
        _write_tree(tmp_path, {**CORRUPTED, "labels.npy": labels})
        with pytest.raises(CalikdError, match=r"labels\.npy' is not a readable \.npy array .*\.npy magic"):
            CorruptedSet(tmp_path)
