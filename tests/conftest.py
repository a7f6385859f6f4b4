import pytest

from autoprune.models import load_model
from autoprune.space import build_space


@pytest.fixture(scope="session")
def resnet56():
    """The embedded default: CIFAR ResNet-56 with its shipped pretrained weights."""
    return load_model("cifar:resnet56", weights="shipped")


@pytest.fixture(scope="session")
def resnet56_space(resnet56):
    return build_space(resnet56)
