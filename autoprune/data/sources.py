"""Data sources -> the proxy-train / proxy-val / test splits a model family expects.

Three sources sit behind `load_data` (the SOURCES registry):
  cifar10-mini              the real CIFAR-10 subset that ships in the package (the embedded default)
  imagefolder:/dir          dir/train/<class>/* and dir/val/<class>/* (or dir/test/<class>/*)
  cifar10:/dir              the CIFAR-10 python batches (data_batch_1..5, test_batch, batches.meta)

Images are decoded once and kept as uint8 tensors at the model's input size while that fits in memory
(`CACHE_BYTES`); larger folders are decoded per batch. Every split is an `ImageSet`: iterating it yields
normalised float NCHW image batches with int64 labels, in a fixed order.
"""
from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.v2 import functional as TF

from .. import assets
from ..errors import AutopruneError, DataError
from ..models.specs import LoadedModel
from .task import TaskData, evaluate_top1

# The statistics the CIFAR ResNets were trained with (see the weights' README); torchvision's ImageNet
# models use the same numbers.
CIFAR_MEAN = (0.485, 0.456, 0.406)
CIFAR_STD = (0.229, 0.224, 0.225)
IMAGENET_MEAN, IMAGENET_STD = CIFAR_MEAN, CIFAR_STD
# ImageNet evaluation resizes the shorter side to crop/0.875 (256 for 224) and takes the centre crop.
CROP_RATIO = 0.875
# Decoded image folders up to this size stay in memory as uint8; larger ones are decoded per batch.
CACHE_BYTES = 2 << 30
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff"}
BATCH = 256  # the batch that iterating an ImageSet yields
PROXY_VAL_SIZE = 1000  # images held out of the training part to score proxies on


def normalise(images: np.ndarray, mean=CIFAR_MEAN, std=CIFAR_STD) -> torch.Tensor:
    """uint8 NHWC -> float NCHW, scaled to [0, 1] and standardised per channel."""
    return _standardise(torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2), mean, std)


def _standardise(pixels: torch.Tensor, mean, std) -> torch.Tensor:
    x = pixels.float().div_(255)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@dataclass(frozen=True)
class Transform:
    """What a model family expects: geometry (once, at decode), normalisation and training augmentation."""

    family: str
    size: tuple[int, int]  # (H, W) of the model's input

    @classmethod
    def for_model(cls, loaded: LoadedModel) -> "Transform":
        shape = tuple(loaded.input_shape)
        if len(shape) != 3 or shape[0] != 3:
            raise DataError(
                f"{loaded.spec} takes input of shape {shape}, and the built-in data sources hold RGB images: pass "
                "your own data and metric (autoprune.search(model, budget, train_data=..., evaluate=...))"
            )
        return cls(loaded.family, shape[1:])

    def geometry(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW at any size -> uint8 NCHW at the model's size."""
        if tuple(pixels.shape[-2:]) == self.size:
            return pixels
        if self.family == "cifar":  # CIFAR models see whole images, never crops
            return TF.resize(pixels, list(self.size), antialias=True)
        short = math.ceil(min(self.size) / CROP_RATIO)
        return TF.center_crop(TF.resize(pixels, short, antialias=True), list(self.size))

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        mean, std = (CIFAR_MEAN, CIFAR_STD) if self.family == "cifar" else (IMAGENET_MEAN, IMAGENET_STD)
        return _standardise(pixels, mean, std)

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random horizontal flip and, for CIFAR, a random crop from a 4-pixel zero-padded image."""
        flip = torch.rand(len(x), generator=generator) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        if self.family != "cifar":
            return x
        pad = 4
        h, w = x.shape[-2:]
        padded = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (len(x),), generator=generator)
        dx = torch.randint(0, 2 * pad + 1, (len(x),), generator=generator)
        rows = (dy.view(-1, 1) + torch.arange(h)).view(-1, 1, h, 1).expand(-1, x.shape[1], h, w + 2 * pad)
        padded = padded.gather(2, rows)
        cols = (dx.view(-1, 1) + torch.arange(w)).view(-1, 1, 1, w).expand(-1, x.shape[1], h, w)
        return padded.gather(3, cols)


class _Pixels:
    """Decoded images kept in memory: uint8 NCHW at the model's size."""

    def __init__(self, pixels: torch.Tensor):
        self.pixels = pixels

    def fetch(self, idx: torch.Tensor) -> torch.Tensor:
        return self.pixels[idx]


class _Files:
    """Images decoded at every fetch: for folders too large to hold in memory."""

    def __init__(self, paths: list[Path], transform: Transform):
        self.paths, self.transform = paths, transform

    def fetch(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.transform.geometry(_decode(self.paths[i])[None])[0] for i in idx.tolist()])


class ImageSet:
    """A split: some of a source's images with their labels, served as normalised batches."""

    def __init__(self, store, labels: torch.Tensor, indices: torch.Tensor, transform: Transform):
        self._store, self._labels, self.indices, self.transform = store, labels, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def labels(self) -> torch.Tensor:
        return self._labels[self.indices]

    def subset(self, indices) -> "ImageSet":
        """The images at the given positions of this set."""
        return ImageSet(self._store, self._labels, self.indices[torch.as_tensor(indices, dtype=torch.long)], self.transform)

    def sample(self, n: int, seed: int = 0) -> "ImageSet":
        """A class-balanced random subset of (about) n images; the whole set if n >= its size."""
        return self if n >= len(self) else self.subset(_stratified(self.labels, n, seed))

    def batches(
        self,
        batch_size: int = BATCH,
        shuffle: bool = False,
        seed: int = 0,
        augment: bool = False,
        drop_last: bool = False,
        skip: int = 0,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(images, labels) batches; `seed` fixes the order and the augmentation; the first `skip` are not read."""
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed)) if shuffle else torch.arange(len(self))
        stop = len(self) - (len(self) % batch_size if drop_last else 0)
        for b, start in enumerate(range(skip * batch_size, stop, batch_size), start=skip):
            idx = self.indices[order[start : start + batch_size]]
            x = self.transform.normalise(self._store.fetch(idx))
            if augment:
                # One generator per batch, so that a resumed run that skips batches augments the rest alike.
                x = self.transform.augment(x, torch.Generator().manual_seed(seed * 1_000_003 + b))
            yield x, self._labels[idx]

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        return len(self) // batch_size if drop_last else math.ceil(len(self) / batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.batches()


@dataclass
class DataSplits(TaskData):
    """proxy_train and proxy_val are disjoint parts of `train`; `test` is a separate set the search never sees.
    A candidate's score is its top-1 on proxy_val; the exported model's is its top-1 on test."""

    train: ImageSet
    proxy_train: ImageSet
    proxy_val: ImageSet
    test: ImageSet
    classes: tuple[str, ...]
    source: str
    metric: str = "proxy-val top-1"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def score(self, model) -> float:
        return evaluate_top1(model, self.proxy_val)

    def test_score(self, model) -> float:
        return evaluate_top1(model, self.test)


def _stratified(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Positions of a random sample of n labels with every class in proportion (sorted, deterministic)."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    # Sorting the shuffled positions by class and taking every k-th keeps each class's share.
    by_class = order[torch.argsort(labels[order], stable=True)]
    picks = torch.linspace(0, len(labels) - 1, n).round().long()
    return torch.sort(by_class[picks]).values


def _decode(path: Path) -> torch.Tensor:
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise AutopruneError(f"cannot decode image {path}: {exc}") from exc
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def _class_folders(root: Path) -> dict[str, list[Path]]:
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    if not classes:
        raise AutopruneError(f"{root} holds no class folders (expected {root}/<class>/<image files>)")
    files = {}
    for folder in classes:
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise AutopruneError(f"class folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        files[folder.name] = images
    return files


def _read_folder(root: Path, transform: Transform) -> tuple[object, torch.Tensor, tuple[str, ...]]:
    files = _class_folders(root)
    paths = [p for images in files.values() for p in images]
    labels = torch.tensor([c for c, images in enumerate(files.values()) for _ in images])
    h, w = transform.size
    if len(paths) * 3 * h * w > CACHE_BYTES:
        return _Files(paths, transform), labels, tuple(files)
    pixels = torch.empty(len(paths), 3, h, w, dtype=torch.uint8)
    for i, path in enumerate(paths):
        pixels[i] = transform.geometry(_decode(path)[None])[0]
    return _Pixels(pixels), labels, tuple(files)


def _imagefolder(path: str, transform: Transform):
    root = Path(path)
    if not root.is_dir():
        raise AutopruneError(f"image folder not found: {path}")
    held_out = next((root / name for name in ("val", "test") if (root / name).is_dir()), None)
    if not (root / "train").is_dir() or held_out is None:
        raise AutopruneError(f"{path} must hold train/ and val/ (or test/) folders, each with one folder per class")
    train = _read_folder(root / "train", transform)
    test = _read_folder(held_out, transform)
    if train[2] != test[2]:
        raise AutopruneError(f"{root / 'train'} and {held_out} have different class folders")
    return train, test


class _CifarUnpickler(pickle.Unpickler):
    """The CIFAR-10 python batches are pickles by format: allow only the numpy types they contain."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} has no place in a CIFAR-10 batch")
        return super().find_class(module, name)


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise AutopruneError(f"CIFAR-10 batch not found: {path}")
    try:
        with open(path, "rb") as f:
            batch = _CifarUnpickler(f, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise AutopruneError(f"{path} is not a CIFAR-10 python batch: {exc}") from exc
    if len(labels) != len(data):
        raise AutopruneError(f"{path}: {len(data)} images but {len(labels)} labels")
    return data, labels


def _cifar_python(path: str, transform: Transform):
    root = Path(path)
    if not root.is_dir():
        raise AutopruneError(f"CIFAR-10 folder not found: {path}")
    parts = [_cifar_batch(root / f"data_batch_{i}") for i in range(1, 6)]
    test_images, test_labels = _cifar_batch(root / "test_batch")
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    classes = tuple(f"class{i}" for i in range(int(max(labels.max(), test_labels.max())) + 1))
    meta = root / "batches.meta"
    if meta.is_file():
        with open(meta, "rb") as f:
            classes = tuple(n.decode() for n in _CifarUnpickler(f, encoding="bytes").load()[b"label_names"])
    return _arrays(images, labels, transform, classes), _arrays(test_images, test_labels, transform, classes)


def _arrays(images_nchw: np.ndarray, labels: np.ndarray, transform: Transform, classes):
    pixels = transform.geometry(torch.from_numpy(np.ascontiguousarray(images_nchw)))
    return _Pixels(pixels), torch.from_numpy(labels.astype(np.int64)), tuple(classes)


def _cifar10_mini(path: str, transform: Transform):
    if path:
        raise AutopruneError("cifar10-mini is the shipped subset: it takes no path")
    d = assets.load_cifar10_mini()
    nchw = lambda a: a.transpose(0, 3, 1, 2)  # noqa: E731 - the shipped arrays are NHWC
    return (
        _arrays(nchw(d.train_images), d.train_labels, transform, d.classes),
        _arrays(nchw(d.test_images), d.test_labels, transform, d.classes),
    )


# Data sources by kind: each reads `kind:path` (or the bare kind) into (train, test) stores with labels.
SOURCES = {"cifar10-mini": _cifar10_mini, "imagefolder": _imagefolder, "cifar10": _cifar_python}
SOURCE_FORMS = ("cifar10-mini", "imagefolder:/path", "cifar10:/path/to/cifar-10-batches-py")


def load_data(source: str, loaded: LoadedModel, seed: int = 0, val_size: int = PROXY_VAL_SIZE) -> DataSplits:
    """Reads a data source for `loaded` and splits its training part into proxy-train and proxy-val.

    proxy_val is a class-balanced sample of `val_size` training images (at most a fifth of them), drawn
    with `seed`; proxy_train is the rest; `test` is the source's held-out part (the shipped test images,
    val/ or test/, test_batch).
    """
    kind, _, path = source.partition(":")
    if kind not in SOURCES or (kind != "cifar10-mini" and not path):
        raise AutopruneError(f"unknown data source '{source}': use {', '.join(SOURCE_FORMS)}")
    transform = Transform.for_model(loaded)
    train, test = SOURCES[kind](path, transform)
    (store, labels, classes), (test_store, test_labels, _) = train, test
    if int(labels.max()) >= len(classes) or int(test_labels.max()) >= len(classes):
        raise AutopruneError(f"{source}: labels go beyond the {len(classes)} classes it names")
    outputs = loaded.num_classes
    if outputs != len(classes):
        raise AutopruneError(
            f"{source} has {len(classes)} classes but {loaded.spec} outputs {outputs}: "
            "use data with the model's classes or a model trained on this data"
        )
    whole = ImageSet(store, labels, torch.arange(len(labels)), transform)
    n_val = min(val_size, len(whole) // 5)
    val_positions = _stratified(labels, n_val, seed)
    rest = torch.ones(len(whole), dtype=torch.bool)
    rest[val_positions] = False
    test_set = ImageSet(test_store, test_labels, torch.arange(len(test_labels)), transform)
    return DataSplits(whole, whole.subset(rest.nonzero().flatten()), whole.subset(val_positions), test_set, classes, source)
