"""Images -> normalised tensors for the model families autoprune knows."""
from __future__ import annotations

import numpy as np
import torch

# The statistics the CIFAR ResNets were trained with (see the weights' README).
CIFAR_MEAN = (0.485, 0.456, 0.406)
CIFAR_STD = (0.229, 0.224, 0.225)


def normalise(images: np.ndarray, mean=CIFAR_MEAN, std=CIFAR_STD) -> torch.Tensor:
    """uint8 NHWC -> float NCHW, scaled to [0, 1] and standardised per channel."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@torch.no_grad()
def top1(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 256) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(images), batch):
        correct += (model(images[i : i + batch]).argmax(1) == labels[i : i + batch]).sum().item()
    return correct / len(images)
