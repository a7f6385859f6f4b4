"""A profiling kit: everything another device needs to build its own table, as one zip.

It holds the job's manifest, the micro-benchmark and calibration ONNX files and the standalone
runner; the device needs python3, numpy and onnxruntime only, and its table loads into autoprune as is.
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


def write_kit(job: Path, kit: Path) -> Path:
    for module in (RUNNER_FILE, SIGNATURE_FILE, FINGERPRINT_FILE):  # the runner and the two files it imports
        shutil.copy(module, job / Path(module).name)
    (job / "README.txt").write_text(README.format(name=kit.name))
    kit.parent.mkdir(parents=True, exist_ok=True)
    tmp = kit.with_name(kit.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(job.rglob("*")):
            if path.is_file() and not path.name.endswith(".json") or path.name == "manifest.json":
                zf.write(path, path.relative_to(job).as_posix())
    tmp.replace(kit)
    shutil.rmtree(job, ignore_errors=True)
    return kit
