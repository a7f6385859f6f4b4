"""What the benchmarks share."""
from __future__ import annotations

import json
import tarfile
import time
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


def bisect(fits, failing: float, fitting: float, steps: int = 14) -> float:
    """The boundary between a knob value that does not fit and one that does; returns the fitting side."""
    for _ in range(steps):
        mid = (failing + fitting) / 2
        if fits(mid):
            fitting = mid
        else:
            failing = mid
    return fitting


def retarget_margin(measured_ms: float, limit_ms: float, predicted_ms: float, target_ms: float) -> str:
    """The --margin that would have put a candidate measured over the limit within it: its search's target scaled by
    how far it measured over the limit and how far its prediction sat under the target (measured taken to scale
    with predicted)."""
    return f"{(measured_ms / limit_ms) * (target_ms / predicted_ms) - 1:.4f}"


class Pieces:
    """A JSON file of finished results, saved after each one, so that a benchmark resumes where it stopped.

    A run stops before starting a new piece after `max_seconds`: on a shared machine, run it again until
    it finishes.
    """

    def __init__(self, path: Path, max_seconds: float = float("inf")):
        self.path, self.start, self.max_seconds = path, time.time(), max_seconds
        self.done = json.loads(path.read_text()) if path.exists() else {}

    def get(self, key: str, compute):
        if key not in self.done:
            if time.time() - self.start > self.max_seconds:
                raise SystemExit(f"stopped at --max-seconds before '{key}': run again to continue")
            self.done[key] = compute()
            self._save()
        return self.done[key]

    def drop(self, *keys: str) -> None:
        """Forgets pieces whose inputs changed, so that the next `get` computes them again."""
        for key in keys:
            self.done.pop(key, None)
        self._save()

    def _save(self) -> None:
        partial = self.path.with_suffix(".partial")  # a run killed while writing keeps the previous file
        partial.write_text(json.dumps(self.done, indent=1))
        partial.replace(self.path)


RESULTS = Path(__file__).resolve().parent / "results"


def write_results(name: str, data: dict, lines: list[str]) -> str:
    """benchmarks/results/NAME.json (the figures) and NAME.md (the table people read); prints the table."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=1))
    text = "\n".join(lines) + "\n"
    (RESULTS / f"{name}.md").write_text(text)
    print(text)
    return text


def wait_until_quiet(limit: float = 0.6, patience_s: float = 1800) -> float:
    """Waits until the 1-minute load average is under `limit` (nothing else running) before a timing pass, so
    that no figure is timed beside another job; returns the load it started at (recorded with the figures)."""
    start = time.time()
    while True:
        load = float(Path("/proc/loadavg").read_text().split()[0])
        if load < limit or time.time() - start > patience_s:
            if load >= limit:
                print(f"warning: timing at load {load:.2f} after waiting {patience_s:.0f} s for a quiet machine")
            return load
        time.sleep(15)
