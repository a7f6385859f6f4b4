"""Prune a detector's backbone for latency, heads kept whole, with your loss and your metric, from Python.

A torchvision Faster R-CNN (MobileNetV3-Large FPN, 320 px) is too much for one search to retrain whole, and its
heads are what the detector is; its backbone is most of the time an image spends in it. autoprune searches the
backbone (the MobileNetV3 body and the FPN's lateral width; the FPN's 256 output channels, which the heads read,
stay), as one module from image to features:
  1. `BackboneFeatures` wraps `detector.backbone` so it returns one tensor (every FPN level, flattened);
  2. the loss is feature distillation: the pruned backbone learns to give the unpruned one's features, so no
     labels or detection losses are needed to fine-tune it (targets computed once, `distillation_data`);
  3. the metric is yours: here how much of the unpruned features the pruned backbone keeps
     (`feature_fidelity`); with a trained detector and labelled images, score mAP instead, putting the candidate
     back with `with_backbone(detector, candidate)` (e.g. torchmetrics' MeanAveragePrecision over your val set);
  4. profile, search, export the best member, and put it back into the detector, which then detects as before.

    python examples/detector_backbone.py --out runs/detector --trials 8

The weights here are random and the images the shipped CIFAR-10 subset scaled to 320 px: what this shows is the
workflow and the latency; bring your detector's weights and your images (what the detector sees after its own
transform: resized and normalised) for accuracy that means something.
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torch.utils.data import DataLoader, TensorDataset

import autoprune
from autoprune.assets import load_cifar10_mini

SIZE = 320


class BackboneFeatures(nn.Module):
    """A detector's backbone as one module from image to one tensor: every FPN level, flattened and joined."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([f.flatten(1) for f in self.backbone(x).values()], 1)


def detector(num_classes: int = 3) -> nn.Module:
    """Stands in for your trained detector: load its weights instead of the random ones."""
    return torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=num_classes).eval()


def with_backbone(model: nn.Module, features: BackboneFeatures) -> nn.Module:
    """A copy of the detector whose backbone is the (pruned) one in `features`: heads and transform untouched."""
    swapped = copy.deepcopy(model)
    swapped.backbone = copy.deepcopy(features.backbone)
    return swapped.eval()


def images(count: int, offset: int = 0) -> torch.Tensor:
    """The shipped CIFAR-10 images at the detector's size, normalised as its transform would (stand-ins for yours)."""
    data = load_cifar10_mini()
    x = torch.from_numpy(data.train_images[offset:offset + count]).permute(0, 3, 1, 2).float() / 255
    x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    return (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


@torch.no_grad()
def distillation_data(teacher: BackboneFeatures, x: torch.Tensor, batch_size: int, shuffle: bool) -> DataLoader:
    """(image, the unpruned backbone's features) pairs: what the loss pulls a pruned backbone toward."""
    targets = torch.cat([teacher(chunk) for chunk in x.split(32)])
    return DataLoader(TensorDataset(x, targets), batch_size=batch_size, shuffle=shuffle, drop_last=shuffle)


def feature_fidelity(loader: DataLoader):
    """The metric (higher is better): 1 - the features' squared error relative to the unpruned features' energy."""

    @torch.no_grad()
    def metric(model: nn.Module) -> float:
        error = energy = 0.0
        for x, target in loader:
            error += float(((model(x) - target) ** 2).sum())
            energy += float((target ** 2).sum())
        return 1 - error / energy

    return metric


def run(out: Path, budget: str, trials: int, train_images: int, val_images: int, export_epochs: float) -> dict:
    torch.manual_seed(0)
    full = detector()
    teacher = BackboneFeatures(full.backbone).eval()
    train = distillation_data(teacher, images(train_images), 16, shuffle=True)
    val = distillation_data(teacher, images(val_images, offset=train_images), 32, shuffle=False)
    example = val.dataset.tensors[0][:1]
    objects = dict(example_inputs=example, train_data=train, evaluate=feature_fidelity(val), loss=F.mse_loss)
    table = autoprune.profile(teacher, out / "table.json", example_inputs=example)
    result = autoprune.search(teacher, budget, table=str(table.path), out=out / "search", trials=trials,
                              proxy="adaptive-bn", **objects)
    best = result.select()
    report = autoprune.export(out / "search", model=teacher, trial=best.trial, finetune_epochs=export_epochs,
                              **objects)
    pruned = autoprune.load_pruned(report.files["model"], model=teacher)
    detections = with_backbone(full, pruned)([torch.rand(3, 480, 640)])
    return {"best": best, "report": report, "detections": detections[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/detector"))
    p.add_argument("--budget", default="0.6x")
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--train-images", type=int, default=256)
    p.add_argument("--val-images", type=int, default=64)
    p.add_argument("--export-epochs", type=float, default=1)
    args = p.parse_args()
    found = run(args.out, args.budget, args.trials, args.train_images, args.val_images, args.export_epochs)
    r, boxes = found["report"], found["detections"]["boxes"]
    print(f"exported trial {r.trial}: feature fidelity {r.test_accuracy:.3f} after {r.finetune_epochs} epoch(s); "
          f"backbone {r.measured_ms:.2f} ms measured vs {r.predicted_ms:.2f} ms predicted (budget {r.budget_ms:.2f} "
          f"ms); the detector with it returned {len(boxes)} boxes; files in {args.out}")


if __name__ == "__main__":
    main()
