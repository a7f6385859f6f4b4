"""This machine's latency tables: found in a per-user cache, measured on first use, reused after.

A cached table is keyed by everything that changes what it measures: this machine's fingerprint (CPU model,
cores, ISA flags, GPU), the backend and its runtime release (major.minor), threads, batch, dtype, and the
model's layout (its groups and their widths). A search space whose choices need kernels the table lacks (finer
steps, an edited space file) grows the table with them. The folder is $AUTOPRUNE_CACHE, else $XDG_CACHE_HOME/autoprune/tables, else
~/.cache/autoprune/tables. Two processes that need the same missing table take a lock: one profiles, the
other waits and reads it; the runner writes tables atomically, so no reader sees half a table.
"""
from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .. import defaults
from ..errors import AutopruneError, TableError
from ..models.specs import LoadedModel
from ..precision import Precision, precision
from ..pruning.space import SearchSpace
from .backends import get_backend
from .fingerprint import differences, this_machine
from .layout import build_layout, enumerate_signatures, model_key
from .table import LatencyTable, UnsteadyProfileWarning, disturbed

CACHE_ENV = "AUTOPRUNE_CACHE"
# What a first-use profile measures: the defaults of `autoprune profile`, held-out configs included, so
# --margin auto and the front's likely range have this machine's figures.
CALIBRATION, VALIDATION = 30, 20
PROFILE_ATTEMPTS = 3


@dataclass(frozen=True)
class LocalTarget:
    """The runtime settings a table for this machine is measured with."""

    backend: str = defaults.BACKEND
    threads: int = defaults.THREADS
    batch: int = defaults.BATCH
    precision: Precision = precision()


def cache_dir(kind: str = "tables") -> Path:
    """Where autoprune keeps what it measured or trained on this machine: $AUTOPRUNE_CACHE holds the tables and a
    folder per other kind (supernets), else $XDG_CACHE_HOME (or ~/.cache)/autoprune/<kind>."""
    if os.environ.get(CACHE_ENV):
        root = Path(os.environ[CACHE_ENV])
        return root if kind == "tables" else root / kind
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "autoprune" / kind


def cache_path(space: SearchSpace, target: LocalTarget) -> Path:
    """Where this machine's table for `space` at `target` lives (whether or not it exists yet)."""
    backend = get_backend(target.backend, target.precision)
    identity = {"machine": this_machine(backend.gpu_name()), "runtime": backend.version().split(".")[:2],
                "backend": target.backend, "threads": target.threads, "batch": target.batch,
                "dtype": target.precision.name, "layout": model_key(space),
                "groups": space.full_config()}  # with blocks, another table: its calibration removes them
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9]+", "-", model_key(space)).strip("-")
    return cache_dir() / f"{slug}-{target.backend}-t{target.threads}-b{target.batch}-{target.precision}-{digest}.json"


def table_for_this_machine(loaded: LoadedModel, space: SearchSpace, target: LocalTarget = LocalTarget()) -> LatencyTable:
    """This machine's table for the model: from the cache, or profiled now (once) and cached. A profile whose own
    held-out configs miss by much was measured while the machine's speed moved, and every later prediction would
    carry it (one such table here put a 0.5x search's ladder at 0.29-0.50 of the unpruned model; it measured
    0.40-0.59): it is measured again, whole, up to PROFILE_ATTEMPTS profiles in all, keeping the one that validates
    best. A machine whose speed moves even when idle fails every try: the kept table records how many profiles it
    took, and later runs use it as it is (this run warns, once) rather than pay for them again."""
    path = cache_path(space, target)
    key = model_key(space)
    wanted = set(enumerate_signatures(build_layout(loaded, space), space))
    table = _read(path)
    if _serves(table, wanted, key):
        return table
    with _lock(path):
        table = _read(path, set_aside=True)  # another process may have profiled it while this one waited
        if _serves(table, wanted, key):
            return table
        from .profile import profile

        def profile_into(out: Path) -> None:
            with warnings.catch_warnings():  # each attempt's own warning would repeat; the predictor's says it once
                warnings.simplefilter("ignore", UnsteadyProfileWarning)
                profile(loaded, space, target.backend, out, target.threads, target.batch, target.precision,
                        CALIBRATION, VALIDATION)

        attempts = 1  # a cached table refused for its held-out check was one
        missing = wanted if table is None else wanted - table.entries.keys()
        if missing:
            if table is None:
                print(f"autoprune: no latency table of {space.model} for this machine yet ({_describe(target)}): "
                      f"profiling one now, once (about a minute on 2 cores), cached as {path}", file=sys.stderr, flush=True)
            else:
                print(f"autoprune: this machine's table of {space.model} lacks {len(missing)} kernels "
                      f"of this search space: profiling them into {path}", file=sys.stderr, flush=True)
            profile_into(path)
        kept = LatencyTable.load(path)
        while attempts < PROFILE_ATTEMPTS and _disturbed(kept, key):
            print(f"autoprune: this machine's table of {space.model} missed its own held-out configs by MAPE "
                  f"{_mape(kept, key):.1f}% (the machine's speed moved while it was measured): "
                  f"profiling it again, whole", file=sys.stderr, flush=True)
            again = path.with_name(path.name + ".again")
            again.unlink(missing_ok=True)
            profile_into(again)
            fresh = LatencyTable.load(again)
            if _mape(fresh, key) < _mape(kept, key):
                os.replace(again, path)
                kept = LatencyTable.load(path)  # its path is the cache's now
            else:
                again.unlink()
            attempts += 1
        kept.models[key]["profiles"] = attempts
        kept.save(path)
        if _disturbed(kept, key):
            warnings.warn(f"this machine's table of {space.model} missed its own held-out configs in all {attempts} "
                          f"profiles (the best by MAPE {_mape(kept, key):.1f}%): kept it, and later runs use it as it "
                          f"is; `autoprune tables --clear` profiles again when the machine is quiet",
                          UnsteadyProfileWarning, stacklevel=2)
        return kept


def _serves(table: LatencyTable | None, wanted: set, key: str) -> bool:
    return (table is not None and wanted <= table.entries.keys()
            and (not _disturbed(table, key) or table.models[key].get("profiles", 1) >= PROFILE_ATTEMPTS))


def _disturbed(table: LatencyTable, key: str) -> bool:
    return disturbed(table.models.get(key, {}).get("validation"))


def _mape(table: LatencyTable, key: str) -> float:
    return table.model(key)["validation"]["mape_pct"]


def _describe(target: LocalTarget) -> str:
    machine = this_machine()
    return (f"{machine['cpu']}, {machine['cores']} cores, {' '.join(machine['isa']) or 'no ISA flags'}; "
            f"{target.backend}, {target.threads} thread(s), batch {target.batch}, {target.precision}")


def _read(path: Path, set_aside: bool = False) -> LatencyTable | None:
    """The cached table, or None when there is none; an unreadable one is renamed aside (kept, never
    deleted) when `set_aside`, so profiling again replaces it."""
    if not path.is_file():
        return None
    try:
        return LatencyTable.load(path)
    except AutopruneError as exc:
        if not set_aside:
            return None
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        warnings.warn(f"the cached table was unreadable ({exc}); kept it as {aside.name} and profiling again",
                      stacklevel=3)
        return None


@contextmanager
def _lock(path: Path):
    lock = path.with_name(path.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock, "a")
    except OSError as exc:
        raise TableError(f"cannot write the latency-table cache {path.parent} ({exc.strerror}): set {CACHE_ENV} to "
                         "a writable folder, or pass --table FILE") from exc
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"autoprune: waiting for another process that is profiling {path.name}", file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class CachedTable:
    path: Path
    device: dict | None  # None: the file is unreadable
    models: dict[str, float | None]  # layout -> held-out MAPE %, None without a validation
    age_days: float | None
    this_machine: bool
    problem: str | None = None


def cached_tables() -> list[CachedTable]:
    """Every table in the cache, newest first, with whether it describes this machine."""
    found = []
    for path in sorted(cache_dir().glob("*.json*")):
        if path.suffix == ".lock":
            continue
        try:
            table = LatencyTable.load(path)
        except AutopruneError as exc:
            found.append(CachedTable(path, None, {}, None, False, str(exc)))
            continue
        device = table.device
        date = datetime.datetime.fromisoformat(device["date"])
        age = (datetime.datetime.now(datetime.timezone.utc) - date).total_seconds() / 86400
        models = {key: (m.get("validation") or {}).get("mape_pct") for key, m in table.models.items()}
        found.append(CachedTable(path, device, models, age, not differences(device, this_machine(device.get("gpu")))))
    return sorted(found, key=lambda t: t.age_days if t.age_days is not None else -1)


def clear_cache() -> int:
    """Removes every cached table (and interrupted profiling jobs); returns how many tables went."""
    folder = cache_dir()
    if not folder.is_dir():
        return 0
    gone = 0
    try:
        for path in folder.iterdir():
            if path.is_dir() and path.name.endswith(".job"):
                shutil.rmtree(path)
            elif path.is_file():
                gone += path.suffix in (".json", ".corrupt")
                path.unlink()
    except OSError as exc:
        raise TableError(f"cannot clear the latency-table cache {folder} ({exc.strerror})") from exc
    return gone
