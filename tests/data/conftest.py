"""Fixtures for calikd.data tests: an isolated cache, a local HTTP server, and generators of small files in
the official formats (IDX, CIFAR binary archives, image trees)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import tarfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from calikd.data.cifar import CIFAR10_CLASSES, CIFAR100_COARSE, CIFAR100_FINE
from calikd.data.idx import write_idx


@pytest.fixture(autouse=True)
def _isolated_data_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty cache and no $CALIKD_DATA / $CALIKD_MIRROR from the environment."""
    cache = tmp_path_factory.mktemp("xdg-cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.delenv("CALIKD_DATA", raising=False)
    monkeypatch.delenv("CALIKD_MIRROR", raising=False)
    return cache


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class LocalServer:
    """A ThreadingHTTPServer on 127.0.0.1 serving ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def put(self, relpath: str, data: bytes) -> str:
        """Serve ``data`` at ``relpath``; returns its URL."""
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return self.url + relpath


@pytest.fixture
def http_server(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalServer]:
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    server = LocalServer(tmp_path_factory.mktemp("www"))
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        server.thread.join(timeout=5)


# --- IDX ---------------------------------------------------------------------------------------------


def idx_images(n: int, seed: int = 0, size: int = 28) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size), dtype=np.uint8)


def idx_labels(n: int, seed: int = 0, classes: int = 10) -> np.ndarray:
    return (np.arange(n) % classes).astype(np.uint8)[np.random.default_rng(seed).permutation(n)]


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


# --- tar / zip ---------------------------------------------------------------------------------------


def make_tar_gz(
    members: dict[str, bytes], *, extra: Callable[[tarfile.TarFile], None] | None = None
) -> bytes:
    """A .tar.gz of regular files (and folders for their parents); ``extra`` may add special members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        dirs: set[str] = set()
        for name in members:
            if ".." in name.split("/") or name.startswith("/"):
                continue  # hostile names get no parent folder entries
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d and d not in dirs:
                    info = tarfile.TarInfo(d)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tf.addfile(info)
                    dirs.add(d)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
        if extra is not None:
            extra(tf)
    return buf.getvalue()


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


# --- CIFAR binary ------------------------------------------------------------------------------------


def cifar_records(labels: list[tuple[int, ...]], seed: int) -> tuple[bytes, np.ndarray]:
    """Records of label bytes + 3072 pixels; returns (bytes, images (N, 3, 32, 32))."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(len(labels), 3, 32, 32), dtype=np.uint8)
    out = b"".join(bytes(lab) + img.tobytes() for lab, img in zip(labels, images, strict=True))
    return out, images


def cifar10_archive(per_batch: int = 2) -> tuple[bytes, dict[str, np.ndarray]]:
    """A cifar-10-binary.tar.gz with ``per_batch`` records per file; returns (archive, expected arrays)."""
    members: dict[str, bytes] = {}
    train_images, train_labels = [], []
    for b in range(1, 6):
        labs = [((b * per_batch + i) % 10,) for i in range(per_batch)]
        data, imgs = cifar_records(labs, seed=b)
        members[f"cifar-10-batches-bin/data_batch_{b}.bin"] = data
        train_images.append(imgs)
        train_labels += [lab[0] for lab in labs]
    test_labs = [(9 - i % 10,) for i in range(per_batch)]
    data, test_imgs = cifar_records(test_labs, seed=99)
    members["cifar-10-batches-bin/test_batch.bin"] = data
    members["cifar-10-batches-bin/batches.meta.txt"] = ("\n".join(CIFAR10_CLASSES) + "\n\n").encode()
    members["cifar-10-batches-bin/readme.html"] = b"<html></html>"
    expected = {
        "train_images": np.concatenate(train_images),
        "train_labels": np.array(train_labels),
        "test_images": test_imgs,
        "test_labels": np.array([lab[0] for lab in test_labs]),
    }
    return make_tar_gz(members), expected


def cifar100_archive(n_train: int = 6, n_test: int = 3) -> tuple[bytes, dict[str, np.ndarray]]:
    train_labs = [(i % 20, (i * 7) % 100) for i in range(n_train)]
    test_labs = [((i + 5) % 20, (i * 13 + 1) % 100) for i in range(n_test)]
    train, train_imgs = cifar_records(train_labs, seed=1)
    test, test_imgs = cifar_records(test_labs, seed=2)
    members = {
        "cifar-100-binary/train.bin": train,
        "cifar-100-binary/test.bin": test,
        "cifar-100-binary/fine_label_names.txt": ("\n".join(CIFAR100_FINE) + "\n").encode(),
        "cifar-100-binary/coarse_label_names.txt": ("\n".join(CIFAR100_COARSE) + "\n").encode(),
    }
    expected = {
        "train_images": train_imgs,
        "train_coarse": np.array([c for c, _ in train_labs]),
        "train_fine": np.array([f for _, f in train_labs]),
        "test_images": test_imgs,
        "test_coarse": np.array([c for c, _ in test_labs]),
        "test_fine": np.array([f for _, f in test_labs]),
    }
    return make_tar_gz(members), expected


# --- image trees ---------------------------------------------------------------------------------------


def save_image(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    """Save an (H, W) or (H, W, C) uint8 array; the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array) if mode is None else Image.fromarray(array, mode=mode)
    img.save(path)


def rgb_pattern(seed: int, size: tuple[int, int] = (8, 8)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)


@pytest.fixture
def gen() -> SimpleNamespace:
    """The file generators above, for tests (conftest modules are not imported directly)."""
    return SimpleNamespace(
        sha256_of=sha256_of,
        idx_images=idx_images,
        idx_labels=idx_labels,
        write_idx=write_idx,
        gz=gz,
        make_tar_gz=make_tar_gz,
        make_zip=make_zip,
        cifar_records=cifar_records,
        cifar10_archive=cifar10_archive,
        cifar100_archive=cifar100_archive,
        save_image=save_image,
        rgb_pattern=rgb_pattern,
    )
