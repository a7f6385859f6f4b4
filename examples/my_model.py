"""A user's own model for autoprune: any file with a function that returns an nn.Module.

    autoprune inspect --model examples/my_model.py:build
    autoprune profile --model examples/my_model.py:build --out my-cpu.json
    autoprune search  --model examples/my_model.py:build --weights my_weights.pt --budget 0.5x ...

`input_shape` on the module tells autoprune what one input looks like (else 3x224x224).
"""
import torch.nn as nn


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallNet(nn.Module):
    input_shape = (3, 32, 32)

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            _block(3, 32, 1), _block(32, 64, 2), _block(64, 64, 1), _block(64, 128, 2), _block(128, 128, 1)
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


def build() -> nn.Module:
    return SmallNet()
