"""Model specs -> an nn.Module with the input it expects, and checkpoint loading."""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torchvision

from .. import assets
from .cifar_resnet import DEPTHS, cifar_resnet
from ..defaults import DEFAULT_MODEL, SHIPPED
from ..errors import AutopruneError, UnsupportedModelError

# Keys under which training scripts commonly nest the state dict of a checkpoint.
_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights", "module")
# Auxiliary heads that only run in training: they would miss the channel dependencies that eval
# tracing records, so they are switched off.
_NO_AUX = {"googlenet", "inception_v3"}


@dataclass
class LoadedModel:
    """A model ready to be analysed: the module, what it eats, and where it came from."""

    spec: str
    model: nn.Module
    input_shape: tuple[int, ...]  # one input, without the batch: (C, H, W) for images, (features,) for vectors
    family: str  # "cifar", "imagenet" or "custom": decides the data transforms
    weights: str | None = None

    def example_input(self, batch: int = 1) -> torch.Tensor:
        return torch.randn(batch, *self.input_shape, generator=torch.Generator().manual_seed(0))

    @property
    def num_classes(self) -> int:
        with torch.no_grad():
            return int(self.model.eval()(self.example_input()).shape[1])


def parse_input_shape(text: str) -> tuple[int, int, int]:
    """'3x224x224', '224' or '3,32,32' -> (C, H, W)."""
    parts = text.replace(",", "x").lower().split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        dims = []
    if len(dims) == 1:
        dims = [3, dims[0], dims[0]]
    if len(dims) != 3 or min(dims) < 1:
        raise AutopruneError(f"bad --input-shape '{text}': expected CxHxW such as 3x224x224, or one side such as 224")
    return tuple(dims)


def torchvision_classifiers() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))


def _torchvision_model(name: str) -> tuple[nn.Module, tuple[int, int, int]]:
    if name not in torchvision_classifiers():
        raise AutopruneError(
            f"unknown torchvision classification model '{name}' (e.g. resnet18, mobilenet_v2, efficientnet_b0)"
        )
    kwargs = {"aux_logits": False, "init_weights": True} if name in _NO_AUX else {}
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    # The weights' metadata carries the evaluation size; reading it downloads nothing.
    crop = torchvision.models.get_model_weights(name).DEFAULT.transforms().crop_size[0]
    return model, (3, crop, crop)


def _factory(target: str, attr: str) -> nn.Module:
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise AutopruneError(f"model file not found: {target}")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise AutopruneError(f"cannot import module '{target}': {exc}") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise AutopruneError(f"'{target}' has no callable '{attr}'")
    model = factory()
    if not isinstance(model, nn.Module):
        raise AutopruneError(f"'{target}:{attr}()' returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _cifar_model(name: str) -> tuple[nn.Module, tuple[int, int, int]]:
    if name not in DEPTHS:
        raise AutopruneError(f"unknown CIFAR model '{name}': choose one of {', '.join(DEPTHS)}")
    return cifar_resnet(name), (3, 32, 32)


# Model-spec kinds with a zoo: kind -> (name -> (module with fresh weights, input shape)), and the family that
# decides the data transforms. Any other `kind:name` is a file or module with a factory function.
MODEL_KINDS = {"torchvision": (_torchvision_model, "imagenet"), "cifar": (_cifar_model, "cifar")}


def split_spec(spec: str) -> tuple[str, str]:
    """A model spec's (kind, name): a zoo (MODEL_KINDS) and a model in it, or a file or module and its factory."""
    kind, sep, name = spec.rpartition(":") if spec.count(":") == 1 else (spec, "", "")
    if not sep or not kind or not name:
        raise AutopruneError(
            f"bad model spec '{spec}': use torchvision:<name>, cifar:resnet20|32|44|56, file.py:factory "
            "or package.module:factory"
        )
    return kind, name


def model_and_weights(model: str | None, weights: str | None, trained: bool = False) -> tuple[str, str | None]:
    """The model spec and weights a command runs on; with `trained`, a zoo model (fresh weights: no accuracy to
    keep) needs weights."""
    model = model or DEFAULT_MODEL
    if weights is None and model == DEFAULT_MODEL:
        weights = SHIPPED
    if trained and weights is None and split_spec(model)[0] in MODEL_KINDS:
        raise AutopruneError(f"--weights is required to search {model}: with random weights there is no accuracy "
                             "to keep")
    return model, weights


def build_model(spec: str) -> tuple[nn.Module, tuple[int, ...], str]:
    """Parses a model spec into (module with fresh weights, input shape, family)."""
    kind, name = split_spec(spec)
    if kind in MODEL_KINDS:
        make, family = MODEL_KINDS[kind]
        return (*make(name), family)
    model = _factory(kind, name)
    return model, tuple(getattr(model, "input_shape", (3, 224, 224))), "custom"


def from_module(model, example_inputs=None, input_shape=None) -> "LoadedModel":
    """A model passed as an object, with a batch of example inputs or the shape of one input (no batch)."""
    if not isinstance(model, nn.Module):
        raise UnsupportedModelError(f"model must be a torch.nn.Module or a model spec string, not {type(model).__name__}")
    if example_inputs is not None:
        if not isinstance(example_inputs, torch.Tensor) or example_inputs.dim() < 2:
            raise UnsupportedModelError("example_inputs must be one tensor with a batch dimension, e.g. torch.randn(1, 3, 224, 224)")
        shape = tuple(example_inputs.shape[1:])
    elif input_shape is not None:
        shape = parse_input_shape(input_shape) if isinstance(input_shape, str) else tuple(int(d) for d in input_shape)
    else:
        shape = getattr(model, "input_shape", None)
        if shape is None:
            raise UnsupportedModelError("give example_inputs (a batch) or input_shape (one input's shape) with the model")
    spec = f"module:{type(model).__name__}"
    return LoadedModel(spec, model.eval(), tuple(shape), "custom", weights_digest(model))


def weights_digest(model: nn.Module) -> str:
    """A content hash of the weights: a study resumed with other weights is refused."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + h.hexdigest()[:16]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Loads a checkpoint without unpickling code: a state dict, or a dict holding one."""
    path = Path(path)
    if not path.is_file():
        raise AutopruneError(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any bytes a user names: a text file ends the unpickler in an IndexError
        # torch's refusal opens with advice to load unsafely; its reason follows "WeightsUnpickler error:".
        reason = str(exc).partition("WeightsUnpickler error:")[2]
        first = next((line.strip() for line in reason.splitlines() if line.strip()), "not a file torch.save wrote")
        raise AutopruneError(
            f"cannot read weights {path} safely (weights_only=True): {first}; save a plain state dict "
            "with torch.save(model.state_dict(), path)"
        ) from exc
    if isinstance(obj, dict):
        for key in _STATE_DICT_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise AutopruneError(f"weights {path} hold no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_weights(model: nn.Module, path: str | Path, spec: str) -> None:
    state = read_state_dict(path)
    expected = model.state_dict()
    # Checkpoints from before PyTorch 0.4.1 carry no batch-norm step counters; they are not weights.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected and not k.startswith("aux")]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        details = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", wrong)):
            if keys:
                details.append(f"{len(keys)} keys {label} (e.g. {keys[0]})")
        raise AutopruneError(f"weights {path} do not fit {spec}: " + ", ".join(details))
    model.load_state_dict({k: state[k] for k in expected if k in state}, strict=False)


def load_model(spec: str, weights: str | Path | None = None, input_shape: str | tuple | None = None) -> LoadedModel:
    """Resolves a model spec; `weights` is a checkpoint file or 'shipped' for the bundled weights."""
    model, shape, family = build_model(spec)
    if weights == SHIPPED:
        if spec not in assets.SHIPPED_WEIGHTS:
            raise AutopruneError(f"no shipped weights for {spec}: only for {', '.join(assets.SHIPPED_WEIGHTS)}")
        weights = assets.SHIPPED_WEIGHTS[spec]
    if weights is not None:
        load_weights(model, weights, spec)
    if input_shape is not None:
        shape = parse_input_shape(input_shape) if isinstance(input_shape, str) else tuple(input_shape)
    return LoadedModel(spec, model.eval(), shape, family, None if weights is None else str(weights))
