"""`autoprune profile`: writes a profiling job (micro-benchmarks + calibration models) and measures it.

The job is a directory the standalone runner understands. Locally it runs in a fresh process (ORT)
or in this one (torch); for another device it is zipped into a kit. Building is resumable like
measuring: files already written are reused, entries already measured are not measured again.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import sys
import time
from pathlib import Path

from tqdm import tqdm

from .. import defaults
from ..errors import AutopruneError
from ..models.specs import LoadedModel
from ..precision import FLOAT32, Precision
from ..pruning.blocks import BLOCK
from ..pruning.prune import prune
from ..pruning.space import SearchSpace
from . import backends, runner
from .layout import build_layout, config_signatures, enumerate_signatures, model_key
from .micro import micro_model
from .table import LatencyTable, warn_if_disturbed
from .validate import DEFAULT_SEED as VALIDATION_SEED

# Beyond this many kernels (concat-heavy nets with fine steps) profiling would take hours.
MAX_ENTRIES = 5000
# The calibration fits 5 coefficients: fewer configs than this would fit noise.
MIN_CALIBRATION = 8
# Kernels: warm-up, then consecutive runs (their median); whole models: runner.STEADY.
DEFAULT_SETTINGS = {"warmup": 10, "repeats": 50, "model_warmup": runner.STEADY["warmup"],
                    "rounds": runner.STEADY["rounds"], "per_round": runner.STEADY["per_round"]}


def profile(
    loaded: LoadedModel, space: SearchSpace, backend: str, out: str | Path | None, threads: int = defaults.THREADS,
    batch: int = defaults.BATCH, precision: Precision = FLOAT32, calibration: int = 30, validation: int = 0,
    kit: str | Path | None = None, seed: int = 0, settings: dict | None = None,
) -> Path:
    """Measures `space`'s kernels onto the table `out` (grown if it exists), or writes a kit zip."""
    began = time.time()
    be = backends.get_backend(backend, precision, here=kit is None)
    if kit is not None and not be.writes_onnx:
        raise AutopruneError(f"a kit runs ONNX Runtime on the device: use --backend ort-cpu or ort-cuda, not {backend}")
    if threads < 1 or batch < 1 or calibration < MIN_CALIBRATION:
        raise AutopruneError(f"--threads and --batch must be positive and --calibration at least {MIN_CALIBRATION} configs")
    layers = build_layout(loaded, space)
    found = enumerate_signatures(layers, space)
    if len(found) > MAX_ENTRIES:
        raise AutopruneError(
            f"{space.model}'s space has {len(found)} distinct kernels (over {MAX_ENTRIES}): use coarser "
            "choices (--steps 4 or --multiple-of 16) or freeze groups"
        )
    known = _known_entries(Path(out), be, threads, batch, precision) if out and kit is None else {}
    key = model_key(space)
    job = _job_dir(out, kit, f"{key} {precision}")  # an interrupted profile resumes only in its own precision
    manifest = {
        "backend": be.name, "provider": be.provider, "threads": threads, "batch": batch, "dtype": precision.name,
        "settings": {**DEFAULT_SETTINGS, **(settings or {})}, "model_key": key,
        "model": {"spec": space.model, "input_shape": space.input_shape, "layers": layers,
                  "groups": space.channel_widths(), **_blocks_of(space)},
        "known_entries": {k: known[k] for k in found if k in known},
        "validation_seed": VALIDATION_SEED,
    }
    todo = {k: v for k, v in found.items() if k not in known}
    rng = random.Random(seed)
    configs = [space.full_config()] + [space.random_config(rng) for _ in range(calibration - 1)]
    vrng = random.Random(VALIDATION_SEED)  # the configs `autoprune validate` draws by default
    parts = {"calibration": configs, "validation": [space.random_config(vrng) for _ in range(validation)]}
    print(f"{space.model}: {len(found)} kernels ({len(found) - len(todo)} already in the table), "
          f"{calibration} calibration configs", file=sys.stderr)
    if be.writes_onnx:
        manifest["entries"] = _write_entries(job, todo, batch, precision)
        for part, cfgs in parts.items():
            manifest[part] = _write_configs(job, part, loaded, space, layers, cfgs, batch, precision)
    runner.write_json(job / "manifest.json", manifest)
    if kit is not None:
        from .kit import write_kit

        return write_kit(job, Path(kit))
    out = Path(out)
    start = time.time()
    be.measure_job(job, out, threads, None if be.writes_onnx else
                   _in_process_timers(job, manifest, todo, loaded, space, parts, be, precision))
    print(f"profiled in {time.time() - began:.0f} s (measuring {time.time() - start:.0f} s)", file=sys.stderr)
    shutil.rmtree(job, ignore_errors=True)
    if validation:
        warn_if_disturbed(LatencyTable.load(out).model(key).get("validation"), space.model, out)
    return out


def _blocks_of(space) -> dict:
    """The removable blocks its calibration configs remove (random_config removes about half of them), where the space
    has any: a table calibrated without removed blocks mispredicts them (benchmarks/results/latency_predictor-depth.md)."""
    blocks = [g.name for g in space.searchable_of(BLOCK)]
    return {"blocks": blocks} if blocks else {}


def _known_entries(out: Path, be, threads: int, batch: int, precision: Precision) -> dict:
    """Entries of an existing table at `out` need no new measurement; a table of other settings is refused."""
    if not out.exists():
        return {}
    table = LatencyTable.load(out)
    for field, value in (("backend", be.name), ("threads", threads), ("batch", batch), ("dtype", precision.name)):
        if table.device[field] != value:
            raise AutopruneError(
                f"{out} was measured with {field} {table.device[field]}, this profile uses {value}: choose another --out"
            )
    return table.entries


def _job_dir(out, kit, key: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", key).strip("-")
    if kit is not None:
        job = Path(kit).with_name(f".{Path(kit).name}.job")
        shutil.rmtree(job, ignore_errors=True)  # a kit is built whole, never resumed
    else:
        out = Path(out)
        job = out.with_name(f".{out.name}.{slug}.job")  # an interrupted profile of this model resumes here
    job.mkdir(parents=True, exist_ok=True)
    return job


def _write_file(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _write_entries(job: Path, todo: dict, batch: int, precision: Precision) -> dict[str, str]:
    """One ONNX micro-model per kernel not yet in the table, in the table's precision, named by a hash of its key
    (an int8 kernel is the quantised conv as ORT runs it in a quantised model: QLinearConv and its epilogue)."""
    (job / "entries").mkdir(exist_ok=True)
    measured = runner.read_log(job / "measured.jsonl")
    files = {}
    for key, (layer, cin, cout) in tqdm(todo.items(), desc="exporting kernels", unit="kernel", file=sys.stderr):
        rel = f"entries/{hashlib.sha1(key.encode()).hexdigest()[:16]}.onnx"
        files[key] = rel
        if key in measured or (job / rel).is_file():
            continue
        module, inputs = micro_model(layer, cin, cout, batch)
        _write_file(job / rel, precision.onnx_bytes(module, inputs))
    return files


def _write_configs(job: Path, part: str, loaded, space, layers, configs: list, batch: int,
                   precision: Precision) -> list[dict]:
    """Pruned whole models, exported in the table's precision, with the keys and weight MB the predictor uses."""
    (job / part).mkdir(exist_ok=True)
    written = []
    example = loaded.example_input(batch)
    for i, config in enumerate(tqdm(configs, desc=f"pruning {part} configs", unit="model", file=sys.stderr)):
        rel = f"{part}/{i:03d}.onnx"
        stamp = job / f"{part}/{i:03d}.json"
        if not ((job / rel).is_file() and stamp.is_file() and json.loads(stamp.read_text()) == config):
            _write_file(job / rel, precision.onnx_bytes(prune(loaded.model, space, config), example))
            stamp.write_text(json.dumps(config))
        written.append(_config_record(rel, layers, space, config))
    return written


def _config_record(rel: str, layers: list, space, config: dict) -> dict:
    """What the runner needs to compute a config's calibration features without autoprune."""
    full = space.complete(config)
    keys, weight, acts = config_signatures(layers, full, space.switched_off(full))
    return {"file": rel, "keys": keys, "weight_mb": weight, "activation_mb": acts, "config": config}


def _in_process_timers(job, manifest, todo, loaded, space, parts: dict, be, precision: Precision):
    """For backends that time modules in this process: records the configs in the manifest and returns
    make_timed(ident) for the runner."""
    batch = manifest["batch"]
    example = (loaded.example_input(batch),)
    layers = manifest["model"]["layers"]
    configs = {f"{part}/{i:03d}": c for part, cfgs in parts.items() for i, c in enumerate(cfgs)}
    manifest["entries"] = {k: k for k in todo}
    for part in parts:
        manifest[part] = [_config_record(rel, layers, space, c) for rel, c in configs.items() if rel.startswith(part)]
    runner.write_json(job / "manifest.json", manifest)

    def make_timed(ident: str):
        if ident in configs:
            return be.timed(prune(loaded.model, space, configs[ident]), example, precision)
        return be.timed(*micro_model(*todo[ident], batch), precision)

    return make_timed
