"""The JPEG protocol the accuracy benchmarks share (search_quality, int8_equal_latency, proxy_fidelity,
proxy_vs_truth, proxy_noise): cifar:resnet56, the CIFAR-10 JPEG images (../shared/data/cifar10-jpeg.tar.gz), a base
made by fine-tuning the shipped weights on the JPEG train set (so model and data share one domain: the published
weights lose about 5 points on JPEG pixels), models fine-tuned from it and scored on all 10,000 JPEG test images, and
searches from it. Each script makes what it needs into its own state: none reads another's."""
from __future__ import annotations

import copy
import hashlib
import json
import tarfile
import time
from pathlib import Path

import torch

import autoprune
from autoprune.data.sources import load_data
from autoprune.data.task import evaluate_top1
from autoprune.models.specs import load_model
from autoprune.training.finetune import finetune

MODEL = "cifar:resnet56"
JPEG_TAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"
BASE_EPOCHS = 1.0
FT_EPOCHS = 3.0


def add_jpeg_argument(parser) -> None:
    parser.add_argument("--jpeg", default=str(JPEG_TAR), help="cifar10-jpeg.tar.gz or the folder it unpacks to")


def jpeg_folder(source: str, cache: Path) -> Path:
    """The CIFAR-10 JPEG ImageFolder: `source` itself if it is a folder, else the tarball unpacked once into `cache`."""
    path = Path(source)
    if path.is_dir():
        return path
    if not path.is_file():
        raise SystemExit(f"{path}: no CIFAR-10 JPEG data (give --jpeg cifar10-jpeg.tar.gz or the folder it unpacks to)")
    folder = cache / "cifar10-jpeg"
    if not (folder / "test").is_dir():
        with tarfile.open(path) as tar:
            tar.extractall(folder, filter="data")
    return folder


def jpeg_data(source: str, cache: Path, seed: int):
    """(the shipped model, the JPEG splits) for `seed`'s split of the train set into train and proxy parts."""
    shipped = load_model(MODEL, weights="shipped")
    return shipped, load_data(f"imagefolder:{jpeg_folder(source, cache)}", shipped, seed=seed)


def make_base(shipped, jpeg, path: Path, epochs: float = BASE_EPOCHS, seed: int = 0, checkpoint: Path | None = None):
    """The base at `path`, made there first if missing: the shipped model fine-tuned `epochs` on the JPEG train set."""
    if not path.exists():
        print(f"base: fine-tuning {MODEL} for {epochs:g} epochs on the JPEG train set", flush=True)
        tuned = finetune(copy.deepcopy(shipped.model), jpeg, epochs=epochs, seed=seed,
                         checkpoint=str(checkpoint or path.with_suffix(".ckpt")))
        torch.save(tuned.state_dict(), path)
    return load_model(MODEL, weights=path)


def tuned_top1(model, jpeg, epochs: float, seed: int, checkpoint: Path, name: str = "a model") -> tuple:
    """(the fine-tuned copy of `model`, {"top1": on all JPEG test images, "seconds"})."""
    start = time.time()
    print(f"fine-tuning {name} ({epochs:g} epochs, seed {seed})", flush=True)
    tuned = finetune(copy.deepcopy(model), jpeg, epochs=epochs, seed=seed, checkpoint=str(checkpoint),
                     progress=False).eval()
    return tuned, {"top1": evaluate_top1(tuned, jpeg.test), "seconds": round(time.time() - start)}


def searched(out: Path, **options) -> dict:
    """`autoprune.search(out=out, **options)` and what the benchmarks keep of it: the front (most accurate first)."""
    start = time.time()
    result = autoprune.search(out=str(out), **options)
    front = [{"trial": m.trial, "origin": m.origin, "score": m.proxy_accuracy, "config": m.config,
              "predicted_ms": m.predicted_ms} for m in result.front]
    return {"front": front, "seconds": round(time.time() - start), "trials": result.trials,
            "stopped_early": result.extra.get("stopped_early"), "target_ms": result.extra.get("target_ms"),
            "score": result.extra.get("score")}


def digest(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def one_shot_rows(paths: list[str]) -> dict[str, list[dict]]:
    """Per budget, the distinct configs pruned one-shot from the base with their first truth, labelled by file and
    method (a row fine-tuned from a supernet's slice started from other weights: left out)."""
    rows: dict[str, list[dict]] = {}
    for path in paths:
        for row in json.loads(Path(path).read_text())["results"].values():
            if ("method" not in row or "progressive" in row["method"] or row.get("start", "base") != "base"
                    or not row["top1"]):
                continue
            seen = rows.setdefault(row["budget"], [])
            if all(r["config"] != row["config"] for r in seen):
                seen.append({"label": f"{Path(path).stem}: {row['method']}", "config": row["config"],
                             "top1": row["top1"][0], "share": row["measured_share"]})
    return rows
