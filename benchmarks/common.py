"""What the benchmarks share."""
from __future__ import annotations

import tarfile
from pathlib import Path


def jpeg_folder(source: str, cache: Path) -> Path:
    """The CIFAR-10 JPEG ImageFolder: `source` itself if it is a folder, else the tarball unpacked once."""
    path = Path(source)
    if path.is_dir():
        return path
    folder = cache / "cifar10-jpeg"
    if not (folder / "test").is_dir():
        with tarfile.open(path) as tar:
            tar.extractall(folder, filter="data")
    return folder
