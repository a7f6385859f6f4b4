"""A small CNN for tests that need a whole profile quickly (a `file.py:factory` model spec)."""
import torch.nn as nn


def factory() -> nn.Module:
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )
    model.input_shape = (3, 16, 16)
    return model
