"""Shared pytest options. Loaded in both environments, so it imports neither TensorFlow nor pynq."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser):
    parser.addoption(
        "--test-overlays",
        default=str(ROOT / "build" / "test-overlays"),
        help="where the host tests leave a real (small) overlay bundle for the board tests",
    )


@pytest.fixture(scope="session")
def test_overlays(request) -> Path:
    return Path(request.config.getoption("--test-overlays"))


@pytest.fixture(scope="session")
def cifar10_dir() -> Path:
    """The real CIFAR-10 batches; the Makefile points CIFAR10_DIR at ../shared/datasets when it exists."""
    from board.cifar10 import find_dataset_dir

    return find_dataset_dir(os.environ.get("CIFAR10_DIR"))
