"""The latency table file: JSON (never a pickle), validated when loaded.

    {"schema": "autoprune-latency-table", "version": 2,
     "device":   {cpu, cores, isa, gpu, os, python, backend, backend_version, threads, batch, dtype, date},
     "settings": {warmup, repeats, model_warmup, rounds, per_round},
     "entries":  {signature: {"ms", "spread", "n"}},            # shared by all models of the table
     "models":   {"spec@CxHxW": {"layers": [...], "groups": {name: channels},
                                 "calibration": {"coef": {feature: coefficient}, configs, residuals_pct, fit},
                                 "validation": {n, mape_pct, worst_pct, within_5pct, within_10pct, kendall_tau},
                                 "profiles": n}}}   # how many whole profiles this machine's cache took (cache.py)

Entries are deduplicated across layers and models; a model's calibration is its own, because what
the sum of kernels misses (the layers between, per-call overhead, cache) differs per network. Version 1
tables (those shipped until commit 05ddc64 among them) store "coef" as a list beside a list of "features"; they load as
they are, and runner.calibration_coef reads either form by name.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..errors import AutopruneError
from ..precision import Precision, precision
from .runner import SCHEMA, SCHEMA_VERSION, calibration_coef, write_json

DEVICE_FIELDS = ("backend", "backend_version", "threads", "batch", "dtype", "date")
LAYER_FIELDS = ("name", "op", "in", "out", "hw", "attrs", "epilogue")


@dataclass
class LatencyTable:
    data: dict
    path: Path | None = None

    @property
    def device(self) -> dict:
        return self.data["device"]

    @property
    def entries(self) -> dict:
        return self.data["entries"]

    @property
    def models(self) -> dict:
        return self.data["models"]

    @property
    def backend(self) -> str:
        return self.device["backend"]

    @property
    def precision(self) -> Precision:
        """The precision its latencies are of."""
        return precision(self.device["dtype"])

    @property
    def batch(self) -> int:
        return self.device["batch"]

    @property
    def threads(self) -> int:
        return self.device["threads"]

    def describe(self) -> str:
        """What the table was measured on, in one line."""
        d = self.device
        isa = " ".join(d.get("isa") or [])
        return (f"{d['backend']} {d['backend_version']}, {d['threads']} thread(s), batch {d['batch']}, {d['dtype']} on "
                f"{d.get('cpu')} ({d.get('cores')} cores{', ' + isa if isa else ''}"
                f"{', ' + d['gpu'] if d.get('gpu') else ''})")

    def foreign(self, software: bool = True) -> list[str]:
        """How the machine this table was measured on differs from this one ('field: there -> here'); empty
        when they match. A table from a device without a GPU name or ISA flags is compared on what it has.
        With `software`, another major.minor version of the runtime counts too: its releases change kernels."""
        from .backends import BACKENDS
        from .fingerprint import differences, this_machine

        backend = BACKENDS.get(self.backend)
        moved = differences(self.device, this_machine(backend.gpu_name() if backend else None))
        there = self.device.get("backend_version")
        if software and backend and there:
            here = backend.version()
            if there.split(".")[:2] != here.split(".")[:2]:
                moved.append(f"{self.backend} version: {there} -> {here}")
        return moved

    def model(self, key: str) -> dict:
        if key not in self.models:
            have = ", ".join(self.models) or "none"
            spec = key.split("@")[0]
            raise AutopruneError(
                f"table {self.path or ''} has no layout for {key} (it has: {have}); profile it onto the table "
                f"with `autoprune profile --model {spec} --out {self.path or 'TABLE'}`"
            )
        return self.models[key]

    def save(self, path: str | Path | None = None) -> Path:
        path = Path(path or self.path)
        write_json(path, self.data)
        return path

    @classmethod
    def load(cls, path: str | Path, backend: str | None = None, batch: int | None = None,
             force: bool = False) -> "LatencyTable":
        """Reads and validates a table; a backend or batch other than the requested one is refused
        unless `force` (then it is only a warning)."""
        path = Path(path)
        if not path.is_file():
            raise AutopruneError(f"latency table not found: {path}")
        try:
            data = json.loads(path.read_text())
        except UnicodeDecodeError as exc:
            raise AutopruneError(f"{path} is not a latency table (binary data, not JSON)") from exc
        except ValueError as exc:
            raise AutopruneError(f"{path} is corrupt or truncated: invalid JSON ({exc})") from exc
        problem = validate_data(data)
        if problem:
            raise AutopruneError(f"{path} is not a valid latency table: {problem}")
        table = cls(data, path)
        for field, wanted in (("backend", backend), ("batch", batch)):
            if wanted is not None and table.device[field] != wanted:
                msg = f"table {path} was measured with {field} {table.device[field]}, not {wanted}"
                if not force:
                    raise AutopruneError(msg + " (pass --force to use it anyway)")
                warnings.warn(msg + "; using it because of --force", stacklevel=2)
        return table


def validate_data(data) -> str | None:
    """What is wrong with a parsed table, or None; checks the structure the predictor relies on."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        return "no 'schema': \"autoprune-latency-table\" field (a foreign file?)"
    if not isinstance(data.get("version"), int) or data["version"] > SCHEMA_VERSION:
        return f"schema version {data.get('version')!r} is not one this autoprune reads (<= {SCHEMA_VERSION})"
    device = data.get("device")
    if not isinstance(device, dict) or any(f not in device for f in DEVICE_FIELDS):
        return f"the device block must name {', '.join(DEVICE_FIELDS)}"
    if not isinstance(device["batch"], int) or device["batch"] < 1:
        return f"device batch {device['batch']!r} is not a positive integer"
    entries = data.get("entries")
    if not isinstance(entries, dict):
        return "no 'entries' mapping"
    for key, e in entries.items():
        ms = e.get("ms") if isinstance(e, dict) else None
        if not isinstance(ms, (int, float)) or not math.isfinite(ms) or ms < 0:
            return f"entry '{key}' has no valid 'ms'"
    models = data.get("models")
    if not isinstance(models, dict):
        return "no 'models' mapping"
    for key, model in models.items():
        problem = _model_problem(model)
        if problem:
            return f"model '{key}': {problem}"
    return None


def _model_problem(model) -> str | None:
    if not isinstance(model, dict) or not isinstance(model.get("layers"), list) or not isinstance(model.get("groups"), dict):
        return "needs 'layers' and 'groups'"
    for layer in model["layers"]:
        if not isinstance(layer, dict) or any(f not in layer for f in LAYER_FIELDS):
            return f"every layer needs {', '.join(LAYER_FIELDS)}"
        for side in ("in", "out"):
            expr = layer[side]
            if not isinstance(expr, dict) or not isinstance(expr.get("groups"), dict) or "base" not in expr:
                return f"layer '{layer['name']}' has no valid '{side}' channels"
            unknown = [g for g in expr["groups"] if g not in model["groups"]]
            if unknown:
                return f"layer '{layer['name']}' refers to unknown group '{unknown[0]}'"
    cal = model.get("calibration")
    if cal is not None:
        coef = calibration_coef(cal) if isinstance(cal, dict) else None
        if coef is None or not all(isinstance(c, (int, float)) and math.isfinite(c) for c in coef.values()):
            return "calibration needs a number for each feature in 'coef'"
    return None


class UnsteadyProfileWarning(UserWarning):
    """The table's own held-out check failed: it was measured while the machine was disturbed."""


# Quiet profiles miss their held-out configs by a MAPE of 1.3-5.4% on the machines that built the shipped tables
# and by 6.0-8.2% (65-80% within +-10%) on idle 2-core AMD EPYC VMs whose speed moves by itself, every try alike;
# profiles taken while a neighbour loaded the machine missed by 17-28% (0-25% within +-10%). The thresholds sit
# between the two, so only a load (which profiling again can avoid) counts as disturbed.
DISTURBED_MAPE_PCT, DISTURBED_WITHIN_10 = 12.0, 0.5


def disturbed(validation: dict | None) -> bool:
    """Whether a table's own held-out configs, timed a few seconds after its calibration, miss by so much that the
    machine's speed moved while it was measured (a table without held-out configs cannot tell)."""
    return bool(validation) and (validation["mape_pct"] > DISTURBED_MAPE_PCT
                                 or validation["within_10pct"] < DISTURBED_WITHIN_10)


def warn_if_disturbed(validation: dict | None, model: str, path) -> None:
    """A disturbed table is kept (its figures say so), but whoever profiles it, or predicts with a table they named,
    should hear it."""
    if disturbed(validation):
        warnings.warn(
            f"{model}'s held-out configs miss by MAPE {validation['mape_pct']:.1f}% ({validation['within_10pct']:.0%} "
            f"within +-10%): the machine's speed moved while profiling (another load?); profile again when it is "
            f"quiet, or check later with `autoprune validate --table {path}`", UnsteadyProfileWarning, stacklevel=3)
