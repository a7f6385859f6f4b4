"""Prune a torchvision model on your own DataLoader, scored by your own metric, from Python.

Everything autoprune needs comes as objects: the model (an nn.Module and one batch of example inputs),
the training data (a DataLoader of (images, labels)) and the metric (a function model -> float, higher is
better; here macro-averaged recall, i.e. balanced accuracy, on a validation loader). Steps:
  1. train the model briefly (stands in for your trained model: load your weights instead);
  2. profile a latency table for it on this machine (`autoprune.profile`);
  3. search under a budget (`autoprune.search`), then export the best member (`autoprune.export`);
  4. rebuild the exported model from its file (`autoprune.load_pruned(path, model=unpruned)`).

    python examples/own_model_and_data.py --out runs/own --trials 20

The data here is the CIFAR-10 subset that ships with autoprune, wrapped in a torchvision-style Dataset
with its own augmentation; put your Dataset in its place.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torchvision
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2 as T
from tqdm import tqdm

import autoprune
from autoprune.assets import load_cifar10_mini
from autoprune.deploy import ExportReport


class ArrayImages(Dataset):
    """uint8 NHWC images with labels, transformed like any torchvision dataset."""

    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = torch.from_numpy(images), torch.from_numpy(labels), transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(self.images[i].permute(2, 0, 1)), int(self.labels[i])


def cifar_loaders(limit: int | None = None, batch_size: int = 64) -> tuple[DataLoader, DataLoader]:
    data = load_cifar10_mini()
    normalise = [T.ToDtype(torch.float32, scale=True), T.Normalize((0.49, 0.48, 0.45), (0.25, 0.24, 0.26))]
    train = ArrayImages(data.train_images[:limit], data.train_labels[:limit],
                        T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), *normalise]))
    val = ArrayImages(data.test_images[:limit], data.test_labels[:limit], T.Compose(normalise))
    return (DataLoader(train, batch_size=batch_size, shuffle=True, drop_last=True),
            DataLoader(val, batch_size=256))


def balanced_accuracy(loader: DataLoader, classes: int = 10):
    """The metric: mean over classes of the share of that class's images recognised."""

    @torch.no_grad()
    def metric(model: torch.nn.Module) -> float:
        hits, totals = torch.zeros(classes), torch.zeros(classes)
        for x, y in loader:
            predicted = model(x).argmax(1)
            totals += torch.bincount(y, minlength=classes)
            hits += torch.bincount(y[predicted == y], minlength=classes)
        return float((hits / totals.clamp(min=1)).mean())

    return metric


def resnet18_for_cifar() -> torch.nn.Module:
    """torchvision's ResNet-18 as it is, 10 classes: on 32x32 images its stem leaves 8x8 feature maps, which
    keeps this example to minutes on 2 CPU cores (a 3x3 stem would be 16 times the work)."""
    return torchvision.models.resnet18(num_classes=10)


def train(model: torch.nn.Module, loader: DataLoader, epochs: float) -> torch.nn.Module:
    steps = max(1, round(epochs * len(loader)))
    bar = tqdm(total=steps, desc="pre-training (stands in for your weights)", unit="step")
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, 0.05, total_steps=steps)
    model.train()
    step = 0
    while step < steps:
        for x, y in loader:
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimiser.step()
            schedule.step()
            step += 1
            bar.update(1)
            if step == steps:
                break
    bar.close()
    return model.eval()


def run(model: torch.nn.Module, train_loader: DataLoader, val_loader: DataLoader, out: Path, budget: str,
        trials: int, proxy: str, export_epochs: float, calibration: int = 30) -> dict:
    metric = balanced_accuracy(val_loader)
    example = next(iter(val_loader))[0][:1]
    table = autoprune.profile(model, out / "table.json", example_inputs=example, calibration=calibration)
    objects = dict(example_inputs=example, train_data=train_loader, evaluate=metric)
    result = autoprune.search(model, budget, table=str(table.path), out=out / "search", trials=trials, proxy=proxy,
                              **objects)
    try:
        best = result.select()
    except autoprune.BudgetError as exc:  # every member measured over the budget here: the message gives the margin
        print(exc)
        best = result.front[0]
    try:
        report = autoprune.export(out / "search", model=model, trial=best.trial, finetune_epochs=export_epochs,
                                  **objects)
    except autoprune.LatencyCheckFailed as exc:  # slower here than the budget allows: the report says by how much
        print(exc)
        report = ExportReport(**json.loads((out / "search" / "export" / "report.json").read_text()))
    pruned = autoprune.load_pruned(report.files["model"], model=model)
    return {"unpruned": metric(model), "best": best, "report": report, "reloaded": metric(pruned)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/own-model"))
    p.add_argument("--budget", default="0.5x")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--pretrain-epochs", type=float, default=5, help="stands in for your trained weights")
    p.add_argument("--export-epochs", type=float, default=1)
    args = p.parse_args()
    train_loader, val_loader = cifar_loaders()
    model = train(resnet18_for_cifar(), train_loader, args.pretrain_epochs)
    found = run(model, train_loader, val_loader, args.out, args.budget, args.trials, "adaptive-bn>finetune:20",
                args.export_epochs)
    r = found["report"]
    print(f"unpruned balanced accuracy {found['unpruned']:.3f}; exported trial {r.trial}: {r.test_accuracy:.3f} "
          f"after {r.finetune_epochs} epoch(s), {r.measured_ms:.2f} ms measured vs {r.predicted_ms:.2f} ms predicted "
          f"(budget {r.budget_ms:.2f} ms); files in {args.out}")


if __name__ == "__main__":
    main()
