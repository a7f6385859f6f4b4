"""Kits: what another device needs to measure, as one zip with the standalone runner.

A profiling kit holds the job's manifest and its micro-benchmark and calibration ONNX files, and builds a
table there; a timing kit holds one exported model, and times it for export's latency check. The device
needs python3, numpy and onnxruntime only; what it writes loads into autoprune as is.
"""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from .fingerprint import __file__ as FINGERPRINT_FILE
from .runner import __file__ as RUNNER_FILE
from .signature import __file__ as SIGNATURE_FILE

README = """autoprune latency kit
=====================
On the target device (python3 with numpy and onnxruntime; onnxruntime-gpu for ort-cuda):

    unzip {name} -d kit && cd kit
    python3 runner.py . --out table.json        # add --threads N to override the job's thread count

An interrupted run continues where it stopped when started again. Copy table.json back and use it with
`autoprune predict/validate/search --table table.json`.
"""


TIMING_README = """autoprune timing kit
===================
On the target device (python3 with numpy and onnxruntime; onnxruntime-gpu for ort-cuda):

    unzip {name} -d kit && cd kit
    {command}

Copy result.json back and complete the export's latency check:

    autoprune export --out {out} --measured result.json
"""


def write_kit(job: Path, kit: Path) -> Path:
    """Zips a profiling job with the runner (the job folder is removed)."""
    return _zip(job, kit, README.format(name=kit.name))


def write_timing_kit(onnx: Path, kit: Path, threads: int, provider: str, out: str) -> tuple[Path, str]:
    """Zips one model with the runner and the command that times it; returns the kit and that command."""
    job = kit.with_name(kit.stem + ".job")
    job.mkdir(parents=True, exist_ok=True)
    shutil.copy(onnx, job / "model.onnx")
    command = (f"python3 runner.py --time model.onnx --threads {threads} --provider {provider} "
               "--json result.json")
    return _zip(job, kit, TIMING_README.format(name=kit.name, command=command, out=out)), command


def _zip(job: Path, kit: Path, readme: str) -> Path:
    for module in (RUNNER_FILE, SIGNATURE_FILE, FINGERPRINT_FILE):  # the runner and the two files it imports
        shutil.copy(module, job / Path(module).name)
    (job / "README.txt").write_text(readme)
    kit.parent.mkdir(parents=True, exist_ok=True)
    tmp = kit.with_name(kit.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(job.rglob("*")):
            if path.is_file() and not path.name.endswith(".json") or path.name == "manifest.json":
                zf.write(path, path.relative_to(job).as_posix())
    tmp.replace(kit)
    shutil.rmtree(job, ignore_errors=True)
    return kit
