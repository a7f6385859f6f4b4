"""What ships with the package: the real data and pretrained weights of the embedded default, the
latency tables measured for it, and the search spaces of the models those tables hold.

Found through importlib.resources, so they are where the installed package is. The tables and spaces live
at the top of the repository (latency_tables/, search_spaces/); a wheel carries them inside the package.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np

ASSETS = Path(str(files(__package__)))
CIFAR10_MINI = ASSETS / "cifar10_mini.npz"
SHIPPED_WEIGHTS = {"cifar:resnet56": ASSETS / "cifar_resnet56.pt"}


def _shipped_folder(name: str) -> Path:
    """A top-level folder of the checkout, or its copy inside an installed wheel."""
    inside = ASSETS.parent / name
    return inside if inside.is_dir() else ASSETS.parent.parent / name


SHIPPED_TABLES = _shipped_folder("latency_tables")
SHIPPED_SPACES = _shipped_folder("search_spaces")


def shipped_table_for(model: str) -> Path | None:
    """The first shipped table (sorted by name) that holds a layout of `model`, or None."""
    for path in sorted(SHIPPED_TABLES.glob("*.json")):
        try:
            models = json.loads(path.read_text()).get("models", {})
        except (OSError, ValueError):
            continue
        if any(key.split("@")[0] == model for key in models):
            return path
    return None


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
