"""What the command line and the Python API both assume when the user says nothing: one place for both."""
from __future__ import annotations

DEFAULT_MODEL = "cifar:resnet56"
STUDY_NAME = "autoprune"
# As a weights name: the weights bundled with the default model. As a table name: the shipped reference table
# that holds the model (measured on the machine its device block names, not necessarily this one).
SHIPPED = "shipped"
# Where a table for this machine is measured when none is named: ONNX Runtime on the CPU, 1 thread, batch 1.
BACKEND, THREADS, BATCH, DTYPE = "ort-cpu", 1, 1, "float32"


def default_out(model: str) -> str:
    """A search's run directory when none is given: runs/<model>."""
    return f"runs/{model.rsplit('/', 1)[-1].replace(':', '_').replace('.py', '')}"

