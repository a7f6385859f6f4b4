"""Search on your own images: an ImageFolder with train/ and val/ (or test/) folders of class folders.

This example writes such a folder from the CIFAR-10 subset that ships with autoprune, then searches
the shipped CIFAR ResNet-56 on it from Python. Point `data` at your own folder instead:

    autoprune search --model torchvision:resnet18 --weights w.pt --data imagefolder:/data/pets \\
                     --table my-cpu.json --budget 30ms
"""
import sys
from pathlib import Path

from PIL import Image

import autoprune
from autoprune.assets import load_cifar10_mini


def write_imagefolder(root: Path, per_class: int = 120) -> Path:
    data = load_cifar10_mini()
    for split, images, labels in (("train", data.train_images, data.train_labels),
                                  ("val", data.test_images, data.test_labels)):
        counts = {}
        for image, label in zip(images, labels):
            name = data.classes[int(label)]
            if counts.get(name, 0) >= per_class:
                continue
            counts[name] = counts.get(name, 0) + 1
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{counts[name]:04d}.png")
    return root


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/imagefolder-demo")
    folder = write_imagefolder(out / "images")
    result = autoprune.search(budget="0.6x", out=str(out / "search"), data=f"imagefolder:{folder}", trials=15)
    best = result.select()
    print(f"most accurate within budget: trial {best.trial}, {best.predicted_ms:.3f} ms predicted, "
          f"proxy accuracy {100 * best.proxy_accuracy:.1f}%")
    model = autoprune.load_pruned(best.model_path)
    print(f"loaded the pruned model: {sum(p.numel() for p in model.parameters())} parameters")
