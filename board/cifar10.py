"""CIFAR-10 loader for the official python batches, with every file's md5 checked before unpickling.

Where it looks, in order: an explicit ``directory``, ``$CIFAR10_DIR``, Keras's cache
(``~/.keras/datasets/cifar-10-batches-py``), and finally a download of the official archive into Keras's cache
(only when ``download=True`` and the machine is online). Needs numpy and the standard library only, so the board
runtime uses it too.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from board.errors import DatasetError

log = logging.getLogger(__name__)

#: md5 of each file of the official "CIFAR-10 python version" (https://www.cs.toronto.edu/~kriz/cifar.html).
OFFICIAL_MD5 = {
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
DIRNAME = "cifar-10-batches-py"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))


@dataclass(frozen=True)
class Split:
    """One split of CIFAR-10.

    Attributes:
        images: uint8 array of shape (N, 32, 32, 3), NHWC, RGB.
        labels: int64 array of shape (N,), class indices into ``CLASSES``.
    """

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int) -> Split:
        """The first ``n`` examples (all of them if ``n`` is larger)."""
        return Split(self.images[:n], self.labels[:n])


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def keras_cache_dir() -> Path:
    """Keras's dataset cache, where ``keras.datasets.cifar10`` leaves the batches."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets" / DIRNAME


def find_dataset_dir(directory: str | os.PathLike | None = None, download: bool = False) -> Path:
    """Locate the directory holding the official batch files.

    Args:
        directory: explicit location; when given, nothing else is tried.
        download: fetch the official archive into Keras's cache if no copy is found.

    Returns:
        The directory that holds ``batches.meta``, ``data_batch_1..5`` and ``test_batch``.

    Raises:
        DatasetError: no copy was found (the message lists every place looked at) or the download failed.
    """
    if directory is not None:
        candidates = [Path(directory)]
    else:
        candidates = []
        if os.environ.get("CIFAR10_DIR"):
            candidates.append(Path(os.environ["CIFAR10_DIR"]))
        candidates.append(keras_cache_dir())
    for cand in candidates:
        if (cand / "test_batch").is_file():
            return cand
    if directory is None and download:
        return _download(keras_cache_dir().parent)
    looked = ", ".join(str(c) for c in candidates)
    raise DatasetError(
        f"CIFAR-10 not found (looked in: {looked}). Set CIFAR10_DIR to the folder holding the official "
        f"python batches ({DIRNAME}), or allow a download."
    )


def _download(cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / "cifar-10-python.tar.gz"
    part = archive.with_suffix(".part")
    log.info("downloading %s", ARCHIVE_URL)
    try:
        urllib.request.urlretrieve(ARCHIVE_URL, part)  # noqa: S310 - fixed https URL
    except OSError as exc:
        raise DatasetError(f"CIFAR-10 download from {ARCHIVE_URL} failed: {exc}") from exc
    if _md5(part) != ARCHIVE_MD5:
        part.unlink(missing_ok=True)
        raise DatasetError(f"downloaded archive {part} has the wrong md5; removed it")
    part.rename(archive)
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(cache, filter="data")
        else:
            # Python < 3.10.12 (older PYNQ images) has no extraction filters; the archive's md5 was verified above.
            tar.extractall(cache)  # noqa: S202
    return cache / DIRNAME


def _read_batch(path: Path) -> dict:
    """Verify a batch file's official md5, then unpickle it."""
    if not path.is_file():
        raise DatasetError(f"{path}: file missing")
    expected = OFFICIAL_MD5[path.name]
    actual = _md5(path)
    if actual != expected:
        raise DatasetError(f"{path}: md5 {actual} does not match the official {expected} (corrupt or modified file)")
    # md5 verified against the official release before unpickling, so this is the known file.
    with path.open("rb") as f:
        return pickle.load(f, encoding="bytes")  # noqa: S301


def _to_split(batches: list[dict], path: Path) -> Split:
    try:
        data = np.concatenate([b[b"data"] for b in batches])
        labels = np.concatenate([np.asarray(b[b"labels"], dtype=np.int64) for b in batches])
    except (KeyError, ValueError) as exc:
        raise DatasetError(f"{path}: unexpected batch layout ({exc})") from exc
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # CHW planes -> NHWC
    return Split(np.ascontiguousarray(images, dtype=np.uint8), labels)


def load_split(name: str, directory: str | os.PathLike | None = None, download: bool = False) -> Split:
    """Load ``"train"`` (50,000 images) or ``"test"`` (10,000 images).

    Args:
        name: ``"train"`` or ``"test"``.
        directory: explicit dataset folder; see :func:`find_dataset_dir` for the search order otherwise.
        download: allow downloading the official archive when no copy is found.

    Raises:
        DatasetError: missing or corrupt files, or an unknown split name.
    """
    if name not in ("train", "test"):
        raise DatasetError(f"unknown CIFAR-10 split {name!r}; use 'train' or 'test'")
    root = find_dataset_dir(directory, download)
    files = TRAIN_BATCHES if name == "train" else ("test_batch",)
    return _to_split([_read_batch(root / f) for f in files], root)
