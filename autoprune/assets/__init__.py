"""The real data and pretrained weights that ship inside the package: the embedded default."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).parent
CIFAR10_MINI = ASSETS / "cifar10_mini.npz"
SHIPPED_WEIGHTS = {"cifar:resnet56": ASSETS / "cifar_resnet56.pt"}


@dataclass(frozen=True)
class ImageArrays:
    """Images as uint8 NHWC with integer labels."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...]


def load_cifar10_mini() -> ImageArrays:
    with np.load(CIFAR10_MINI) as d:
        return ImageArrays(
            d["train_images"], d["train_labels"], d["test_images"], d["test_labels"], tuple(d["classes"].tolist())
        )
