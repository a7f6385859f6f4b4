"""Data sources on real images: the shipped CIFAR-10 subset and folders / batches written from it."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from autoprune import assets
from autoprune.data import sources
from autoprune.data.sources import load_data, normalise
from autoprune.errors import AutopruneError
from autoprune.models.specs import load_model

PER_CLASS_TRAIN, PER_CLASS_TEST = 6, 2


@pytest.fixture(scope="module")
def mini():
    return assets.load_cifar10_mini()


@pytest.fixture(scope="module")
def resnet20():
    return load_model("cifar:resnet20")


def first_per_class(labels: np.ndarray, k: int, classes=10) -> np.ndarray:
    return np.concatenate([np.flatnonzero(labels == c)[:k] for c in range(classes)])


def write_folder(root, images, labels, classes, suffix=".png"):
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = root / classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:04d}{suffix}", quality=95)


@pytest.fixture(scope="module")
def small(mini):
    """A small real sample: the first few images of every class."""
    tr = first_per_class(mini.train_labels, PER_CLASS_TRAIN)
    te = first_per_class(mini.test_labels, PER_CLASS_TEST)
    return mini.train_images[tr], mini.train_labels[tr], mini.test_images[te], mini.test_labels[te], mini.classes


@pytest.fixture()
def image_folder(tmp_path, small):
    train_x, train_y, test_x, test_y, classes = small
    write_folder(tmp_path / "train", train_x, train_y, classes)
    write_folder(tmp_path / "val", test_x, test_y, classes)
    return tmp_path


def pixels(images) -> torch.Tensor:
    """The batches of a split put back together (in order)."""
    return torch.cat([x for x, _ in images])


def test_cifar10_mini_splits_are_disjoint_balanced_and_seeded(mini, resnet20):
    splits = load_data("cifar10-mini", resnet20)
    assert (len(splits.train), len(splits.test), splits.num_classes) == (4000, 1017, 10)
    val, rest = set(splits.proxy_val.indices.tolist()), set(splits.proxy_train.indices.tolist())
    assert not val & rest and len(val | rest) == 4000
    assert torch.bincount(splits.proxy_val.labels).tolist() == [len(val) // 10] * 10
    assert torch.equal(load_data("cifar10-mini", resnet20).proxy_val.indices, splits.proxy_val.indices)
    assert not torch.equal(load_data("cifar10-mini", resnet20, seed=1).proxy_val.indices, splits.proxy_val.indices)
    x, y = next(iter(splits.test))
    assert x.shape == (256, 3, 32, 32) and x.dtype == torch.float32
    assert torch.allclose(x, normalise(mini.test_images[:256])) and torch.equal(y, torch.from_numpy(mini.test_labels[:256]))


def test_shuffled_augmented_batches_repeat_under_a_seed_and_skip_exactly(resnet20):
    train = load_data("cifar10-mini", resnet20).proxy_train.sample(300)
    run = lambda **kw: list(train.batches(64, shuffle=True, seed=3, augment=True, drop_last=True, **kw))  # noqa: E731
    whole, again, skipped = run(), run(), run(skip=2)
    assert len(whole) == 4 and all(torch.equal(a[0], b[0]) for a, b in zip(whole, again))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(whole[2:], skipped))
    plain = list(train.batches(64, shuffle=True, seed=3, drop_last=True))
    assert not torch.equal(whole[0][0], plain[0][0]) and torch.equal(whole[0][1], plain[0][1])


def test_imagefolder_reads_png_pixels_exactly(image_folder, small, resnet20):
    train_x, _, test_x, test_y, classes = small
    splits = load_data(f"imagefolder:{image_folder}", resnet20)
    assert splits.classes == classes and len(splits.train) == 10 * PER_CLASS_TRAIN and len(splits.test) == 10 * PER_CLASS_TEST
    assert torch.equal(pixels(splits.test), normalise(test_x)) and torch.equal(splits.test.labels, torch.from_numpy(test_y))
    assert len(splits.proxy_val) == len(splits.train) // 5


def test_imagefolder_jpeg_in_test_folder_and_decoding_per_batch(tmp_path, small, resnet20, monkeypatch):
    train_x, train_y, test_x, test_y, classes = small
    write_folder(tmp_path / "train", train_x, train_y, classes, ".jpg")
    write_folder(tmp_path / "test", test_x, test_y, classes, ".jpg")
    cached = load_data(f"imagefolder:{tmp_path}", resnet20)
    # JPEG changes pixels a little, not the picture.
    assert (pixels(cached.test) - normalise(test_x)).abs().mean() < 0.1
    monkeypatch.setattr(sources, "CACHE_BYTES", 0)  # too big to hold: decoded at every batch instead
    lazy = load_data(f"imagefolder:{tmp_path}", resnet20)
    assert isinstance(lazy.train._store, sources._Files)
    assert torch.equal(pixels(lazy.test), pixels(cached.test)) and torch.equal(pixels(lazy.train), pixels(cached.train))


def test_imagenet_style_models_get_resized_centre_crops(image_folder, tmp_path):
    factory = tmp_path / "net.py"
    factory.write_text(
        "import torch.nn as nn\n"
        "def net():\n"
        "    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))\n"
        "    m.input_shape = (3, 48, 40)\n"
        "    return m\n"
    )
    splits = load_data(f"imagefolder:{image_folder}", load_model(f"{factory}:net"))
    x, _ = next(iter(splits.train))
    assert x.shape[1:] == (3, 48, 40)
    assert -2.2 < x.min() < x.max() < 2.7  # standardised with the ImageNet statistics


def write_cifar_batches(root, small, extra_global=False):
    train_x, train_y, test_x, test_y, classes = small
    root.mkdir()
    chw = lambda a: a.transpose(0, 3, 1, 2).reshape(len(a), -1)  # noqa: E731 - the format stores planar rows
    parts = np.array_split(np.arange(len(train_x)), 5)
    for i, part in enumerate(parts, start=1):
        batch = {b"data": chw(train_x[part]), b"labels": train_y[part].tolist(), b"batch_label": b"batch"}
        (root / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
    (root / "test_batch").write_bytes(pickle.dumps({b"data": chw(test_x), b"labels": test_y.tolist()}))
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [c.encode() for c in classes]}))


def test_cifar_python_batches(tmp_path, small, resnet20):
    # The CIFAR-10 python format is itself a pickle of dicts; the test writes it the way the dataset does.
    write_cifar_batches(tmp_path / "batches", small)
    splits = load_data(f"cifar10:{tmp_path / 'batches'}", resnet20)
    train_x, train_y, test_x, _, classes = small
    assert splits.classes == classes and len(splits.train) == len(train_x)
    assert torch.equal(pixels(splits.train), normalise(train_x)) and torch.equal(splits.train.labels, torch.from_numpy(train_y))
    assert torch.equal(pixels(splits.test), normalise(test_x))


def test_cifar_batches_with_code_in_them_are_refused(tmp_path, small, resnet20):
    write_cifar_batches(tmp_path / "b", small)

    class Sneaky:
        def __reduce__(self):
            return (print, ("ran code",))

    (tmp_path / "b" / "data_batch_2").write_bytes(pickle.dumps({b"data": Sneaky(), b"labels": []}))
    with pytest.raises(AutopruneError, match="not a CIFAR-10 python batch"):
        load_data(f"cifar10:{tmp_path / 'b'}", resnet20)


@pytest.mark.parametrize(
    "source, message",
    [
        ("imagefolder:/no/such/dir", "image folder not found"),
        ("cifar10:/no/such/dir", "CIFAR-10 folder not found"),
        ("cifar10-tiny", "unknown data source"),
        ("imagefolder:", "unknown data source"),
    ],
)
def test_bad_sources_fail_clearly(source, message, resnet20):
    with pytest.raises(AutopruneError, match=message):
        load_data(source, resnet20)


def test_malformed_folders_fail_clearly(image_folder, tmp_path, resnet20):
    (image_folder / "val").rename(image_folder / "elsewhere")
    with pytest.raises(AutopruneError, match="must hold train/ and val/"):
        load_data(f"imagefolder:{image_folder}", resnet20)
    (image_folder / "elsewhere").rename(image_folder / "val")
    (image_folder / "train" / "zebra").mkdir()
    with pytest.raises(AutopruneError, match="zebra holds no images"):
        load_data(f"imagefolder:{image_folder}", resnet20)
    (image_folder / "train" / "zebra").rmdir()
    (image_folder / "train" / "cat" / "9999.png").write_bytes(b"not an image")
    with pytest.raises(AutopruneError, match="cannot decode image"):
        load_data(f"imagefolder:{image_folder}", resnet20)
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "data_batch_1").write_bytes(b"\x00 not a pickle")
    with pytest.raises(AutopruneError, match="not a CIFAR-10 python batch"):
        load_data(f"cifar10:{tmp_path / 'garbage'}", resnet20)


def test_class_count_must_match_the_model(tmp_path, small, resnet20):
    train_x, train_y, test_x, test_y, classes = small
    keep_train, keep_test = train_y < 3, test_y < 3
    write_folder(tmp_path / "train", train_x[keep_train], train_y[keep_train], classes)
    write_folder(tmp_path / "val", test_x[keep_test], test_y[keep_test], classes)
    with pytest.raises(AutopruneError, match="has 3 classes but cifar:resnet20 outputs 10"):
        load_data(f"imagefolder:{tmp_path}", resnet20)
