"""The CIFAR-10 loader reads the real batches and refuses missing or corrupt files with the path in the message."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from board.cifar10 import CLASSES, find_dataset_dir, load_split
from board.errors import DatasetError


def test_real_test_split_loads(cifar10_dir):
    test = load_split("test", cifar10_dir)
    assert test.images.shape == (10_000, 32, 32, 3) and test.images.dtype == np.uint8
    assert test.labels.shape == (10_000,) and set(np.unique(test.labels)) == set(range(len(CLASSES)))
    # The official test set has exactly 1000 images per class.
    assert np.all(np.bincount(test.labels) == 1000)


def test_corrupt_batch_is_refused_before_unpickling(cifar10_dir, tmp_path):
    copy = tmp_path / "cifar-10-batches-py"
    shutil.copytree(cifar10_dir, copy)
    data = bytearray((copy / "test_batch").read_bytes())
    data[5000] ^= 0xFF
    (copy / "test_batch").write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"test_batch: md5 .* does not match"):
        load_split("test", copy)


def test_missing_batch_names_the_path(cifar10_dir, tmp_path):
    copy = tmp_path / "cifar-10-batches-py"
    shutil.copytree(cifar10_dir, copy)
    (copy / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match="data_batch_3: file missing"):
        load_split("train", copy)


def test_no_dataset_anywhere_lists_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(DatasetError, match="nowhere"):
        find_dataset_dir()


def test_unknown_split_is_refused(cifar10_dir):
    with pytest.raises(DatasetError, match="unknown CIFAR-10 split"):
        load_split("validation", cifar10_dir)
