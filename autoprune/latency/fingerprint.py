"""Where a table was measured: the facts about a machine that change kernel timings.

Standard library only: the kit's runner records the same fingerprint on a device without autoprune.
The CPU model name alone is not enough (virtual machines report "AMD EPYC" for several generations), so the
vector-instruction flags that decide which kernels ONNX Runtime and PyTorch pick are part of it.

AUTOPRUNE_FINGERPRINT='{"cpu": "Unseen CPU"}' replaces fields of this machine's fingerprint (a JSON object of
cpu, cores, isa, gpu): it makes this machine one that no shipped table describes, which is how the test suite
checks that nothing depends on the machine it runs on.
"""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path

# Instruction sets whose presence changes the convolution kernels a runtime picks.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile",
             "asimd", "sve")
FIELDS = ("cpu", "cores", "isa", "gpu")
OVERRIDE = "AUTOPRUNE_FINGERPRINT"


class FingerprintError(ValueError):
    """The override in AUTOPRUNE_FINGERPRINT cannot be read."""


def _cpuinfo() -> tuple[str | None, list[str]]:
    name, flags = None, []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model", "Hardware") and name is None:
                name = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = value.split()
    except OSError:
        pass
    return name, flags


def this_machine(gpu: str | None = None) -> dict:
    """The fingerprint of the machine running this: CPU model, logical cores, ISA flags, GPU name."""
    name, flags = _cpuinfo()
    return {
        "cpu": name or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "isa": [f for f in ISA_FLAGS if f in set(flags)],
        "gpu": gpu,
        **_override(),
    }


def _override() -> dict:
    text = os.environ.get(OVERRIDE)
    if not text:
        return {}
    try:
        fields = json.loads(text)
    except ValueError:
        fields = None
    if not isinstance(fields, dict) or not set(fields) <= set(FIELDS):
        raise FingerprintError(f"{OVERRIDE} must be a JSON object with some of the fields {', '.join(FIELDS)}, "
                               f"e.g. '{{\"cpu\": \"Unseen CPU\"}}'; it is {text!r}")
    return fields


def differences(recorded: dict, current: dict) -> list[str]:
    """The fingerprint fields in which two machines differ, as 'field: recorded -> current'. A field the
    recorded side lacks (a table from before fingerprints had ISA flags) is not counted as a difference."""
    return [f"{k}: {recorded[k]} -> {current.get(k)}" for k in FIELDS
            if k in recorded and recorded[k] != current.get(k)]
