"""What the command line and the Python API both assume when the user says nothing: one place for both."""
from __future__ import annotations

from .errors import AutopruneError

DEFAULT_MODEL = "cifar:resnet56"
STUDY_NAME = "autoprune"
# As a weights name: the weights bundled with the default model. As a table name: the shipped reference table
# that holds the model (measured on the machine its device block names, not necessarily this one).
SHIPPED = "shipped"
# Where a table for this machine is measured when none is named: ONNX Runtime on the CPU, 1 thread, batch 1.
BACKEND, THREADS, BATCH, DTYPE = "ort-cpu", 1, 1, "float32"
# Model kinds that build a network with random weights: searching one without --weights keeps no accuracy.
RANDOM_INIT_KINDS = ("torchvision", "cifar")


def default_out(model: str) -> str:
    """A search's run directory when none is given: runs/<model>."""
    return f"runs/{model.rsplit('/', 1)[-1].replace(':', '_').replace('.py', '')}"


def model_and_weights(model: str | None, weights: str | None, trained: bool = False) -> tuple[str, str | None]:
    """The model spec and weights a command runs on; with `trained`, a zoo model needs weights."""
    model = model or DEFAULT_MODEL
    if weights is None and model == DEFAULT_MODEL:
        weights = SHIPPED
    if trained and weights is None and (":" not in model or model.split(":")[0] in RANDOM_INIT_KINDS):
        raise AutopruneError(f"--weights is required to search {model}: with random weights there is no accuracy "
                             "to keep")
    return model, weights
