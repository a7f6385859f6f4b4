"""Does a proxy rank pruned cifar:resnet56 candidates the way a longer fine-tune does?

Protocol (the full one is the default; every cost is a flag so that a smaller one fits a small machine):
 1. base: the shipped ResNet-56 fine-tuned for --base-epochs on the CIFAR-10 JPEG train set, so that the
    model and the data share one domain (the published weights lose about 10 points on JPEG pixels);
 2. --configs random configs of the whole search space, spread evenly over --spread of the base's MACs
    (this branch has no latency table: MACs share stands in for the latency share);
 3. each proxy scores each pruned config on its proxy-val part of the JPEG train set;
 4. truth: each pruned config fine-tuned for --truth-epochs on the JPEG train set (L1 pruning from the base,
    cosine schedule), then top-1 on the JPEG test set (--test-size images of it, 0 = all 10,000);
 5. Kendall's tau and Spearman's rho between each proxy's scores and the truth, and seconds per evaluation.

Every finished piece is cached under --cache (keyed by the settings), and a run stops starting new pieces
after --max-seconds: on a shared machine, run it again until it prints the table, e.g.
    flock /work/cpu.lock python benchmarks/proxy_fidelity.py --max-seconds 540
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from autoprune.data import load_data
from common import jpeg_folder
from autoprune.metrics import count_macs
from autoprune.models import load_model
from autoprune.proxy import evaluate_top1, finetune, make_proxy
from autoprune.prune import prune
from autoprune.space import build_space

ROOT = Path(__file__).resolve().parents[1]
JPEG_TAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
RESULTS = ROOT / "benchmarks" / "results"
MODEL = "cifar:resnet56"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jpeg", default=str(JPEG_TAR), help="cifar10-jpeg.tar.gz or the folder it unpacks to")
    p.add_argument("--cache", default="/tmp/autoprune-proxy-fidelity", help="folder for the resumable pieces")
    p.add_argument("--configs", type=int, default=20)
    p.add_argument("--spread", type=float, nargs=2, default=(0.3, 0.8), help="MACs share range of the configs")
    p.add_argument("--proxies", default="adaptive-bn,finetune:50", help="comma-separated proxy specs")
    p.add_argument("--base-epochs", type=float, default=1.0)
    p.add_argument("--truth-epochs", type=float, default=1.0)
    p.add_argument("--test-size", type=int, default=0, help="JPEG test images for the truth, 0 = all")
    p.add_argument("--repeat-truth", type=int, default=0, help="re-run the truth of N evenly spread configs, another seed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-seconds", type=float, default=float("inf"), help="start no new piece after this")
    return p.parse_args()


def spread_configs(space, base, n: int, low: float, high: float, seed: int) -> list[dict]:
    """n configs whose MACs shares sit near evenly spaced targets in [low, high].

    Each config keeps about sqrt(target) of every group (a conv's MACs scale with its input times its
    output width), with per-group noise so that configs differ in where they prune, not only how much.
    """
    rng = random.Random(seed)
    full = count_macs(base, torch.randn(1, *space.input_shape))
    configs = []
    for i in range(n):
        target = low + (high - low) * (i + 0.5) / n
        for _ in range(50):
            config = {}
            for g in space.searchable:
                keep = min(1.0, max(0.0, rng.gauss(target**0.5, 0.15))) * g.channels
                config[g.name] = min(g.choices, key=lambda c: abs(c - keep))
            share = count_macs(prune(base, space, config), torch.randn(1, *space.input_shape)) / full
            if abs(share - target) <= (high - low) / n:
                break
        configs.append({"config": config, "macs_share": round(share, 4)})
    return configs


class Pieces:
    """A JSON file of finished results, saved after every piece."""

    def __init__(self, path: Path):
        self.path = path
        self.data = json.loads(path.read_text()) if path.is_file() else {}

    def get(self, key):
        return self.data.get(key)

    def put(self, key, value) -> None:
        self.data[key] = value
        self.path.write_text(json.dumps(self.data, indent=1))


def repeated(count: int, n: int) -> list[int]:
    """The configs whose truth runs again: `count` of the n, spread evenly over the sizes."""
    return sorted({int(i) for i in np.linspace(0, n - 1, count).round()}) if count else []


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    out_of_time = lambda: time.perf_counter() - began > args.max_seconds  # noqa: E731
    settings = {k: v for k, v in vars(args).items() if k in ("configs", "spread", "base_epochs", "truth_epochs", "test_size", "seed")}
    key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    cache = Path(args.cache)
    work = cache / key
    work.mkdir(parents=True, exist_ok=True)
    pieces = Pieces(work / "pieces.json")
    folder = jpeg_folder(args.jpeg, cache)

    loaded = load_model(MODEL, weights="shipped")
    splits = load_data(f"imagefolder:{folder}", loaded, seed=args.seed)
    test = splits.test.sample(args.test_size, args.seed) if args.test_size else splits.test

    base_path = work / "base.pt"
    if pieces.get("shipped_test") is None:
        pieces.put("shipped_test", evaluate_top1(loaded.model, test))
    if not base_path.is_file():
        print(f"base: fine-tuning {MODEL} for {args.base_epochs} epochs on the JPEG train set")
        finetune(loaded.model, splits, epochs=args.base_epochs, checkpoint=work / "base.ckpt", seed=args.seed)
        torch.save(loaded.model.state_dict(), base_path)
    loaded.model.load_state_dict(torch.load(base_path, weights_only=True))
    base = loaded.model.eval()
    if pieces.get("base_test") is None:
        pieces.put("base_test", evaluate_top1(base, test))
    space = build_space(loaded)

    if pieces.get("configs") is None:
        pieces.put("configs", spread_configs(space, base, args.configs, *args.spread, args.seed))
    configs = pieces.get("configs")

    for spec in ["none"] + args.proxies.split(","):
        for i, c in enumerate(configs):
            name = f"proxy/{spec}/{i}"
            if pieces.get(name) is not None or out_of_time():
                continue
            pruned = prune(base, space, c["config"])
            if spec == "none":  # pruning alone, no BN re-estimation: what the proxies improve on
                start = time.perf_counter()
                result = {"accuracy": evaluate_top1(pruned, splits.proxy_val), "seconds": time.perf_counter() - start}
            else:
                r = make_proxy(spec, seed=args.seed).evaluate(pruned, splits)
                result = {"accuracy": r.accuracy, "seconds": r.seconds}
            pieces.put(name, result)
            print(f"{name}: {result}")

    # The repeats (another seed for batch order and augmentation) say how far the truth agrees with itself.
    runs = [("truth", i, args.seed) for i in range(len(configs))]
    runs += [("truth-repeat", i, args.seed + 1) for i in repeated(args.repeat_truth, len(configs))]
    for kind, i, seed in runs:
        name = f"{kind}/{i}"
        if pieces.get(name) is not None or out_of_time():
            continue
        start = time.perf_counter()
        pruned = prune(base, space, configs[i]["config"])
        finetune(pruned, splits, epochs=args.truth_epochs, checkpoint=work / f"{kind}-{i}.ckpt", seed=seed, progress=False)
        pieces.put(name, {"accuracy": evaluate_top1(pruned, test), "seconds": time.perf_counter() - start})
        print(f"{name}: {pieces.get(name)}")

    missing = [f"{kind}/{i}" for kind, i, _ in runs if pieces.get(f"{kind}/{i}") is None]
    if missing:
        print(f"{len(missing)} truth runs still to do: run again")
        return
    report(args, settings, pieces, ["none"] + args.proxies.split(","), len(configs))


def report(args, settings: dict, pieces: Pieces, specs: list[str], n: int) -> None:
    truth = np.array([pieces.get(f"truth/{i}")["accuracy"] for i in range(n)])
    shares = [c["macs_share"] for c in pieces.get("configs")]
    # The size of a config alone ranks a spread of sizes somewhat: the floor any proxy must beat.
    size_only = [{"accuracy": share, "seconds": 0.0} for share in shares]
    rows = []
    for spec in ["MACs share alone"] + specs:
        scored = size_only if spec == "MACs share alone" else [pieces.get(f"proxy/{spec}/{i}") for i in range(n)]
        if any(s is None for s in scored):
            continue
        acc = np.array([s["accuracy"] for s in scored])
        rows.append(
            {
                "proxy": spec,
                "kendall_tau": round(float(stats.kendalltau(acc, truth).statistic), 3),
                "spearman_rho": round(float(stats.spearmanr(acc, truth).statistic), 3),
                "seconds_per_eval": round(float(np.mean([s["seconds"] for s in scored])), 2),
                "accuracy": [round(a, 4) for a in acc.tolist()],
            }
        )
    result = {
        "model": MODEL,
        "settings": settings,
        "threads": args.threads,
        "macs_share": shares,
        "shipped_test_top1": pieces.get("shipped_test"),
        "base_test_top1": pieces.get("base_test"),
        "truth_top1": [round(t, 4) for t in truth.tolist()],
        "truth_seconds_mean": round(float(np.mean([pieces.get(f"truth/{i}")["seconds"] for i in range(n)])), 1),
        "proxies": rows,
    }
    which = repeated(args.repeat_truth, n)
    repeats = [pieces.get(f"truth-repeat/{i}") for i in which]
    if repeats and all(repeats):
        again, first = [r["accuracy"] for r in repeats], truth[which]
        result["truth_vs_itself"] = {
            "configs": which,
            "kendall_tau": round(float(stats.kendalltau(again, first).statistic), 3),
            "spearman_rho": round(float(stats.spearmanr(again, first).statistic), 3),
            "repeat_top1": again,
        }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "proxy_fidelity.json").write_text(json.dumps(result, indent=1))
    lines = [
        "| proxy | Kendall's tau | Spearman's rho | seconds per evaluation |",
        "|---|---|---|---|",
        *[f"| {r['proxy']} | {r['kendall_tau']} | {r['spearman_rho']} | {r['seconds_per_eval']} |" for r in rows],
    ]
    table = "\n".join(lines)
    scores = rows[1:]  # the MACs share has a column of its own
    per_config = [
        "| config | MACs share | truth top-1 | " + " | ".join(r["proxy"] for r in scores) + " |",
        "|---" * (3 + len(scores)) + "|",
        *[
            f"| {i} | {shares[i]:.3f} | {truth[i]:.4f} | " + " | ".join(f"{r['accuracy'][i]:.3f}" for r in scores) + " |"
            for i in range(n)
        ],
    ]
    (RESULTS / "proxy_fidelity.md").write_text(
        f"# Proxy fidelity: {MODEL}\n\n"
        f"Written by `benchmarks/proxy_fidelity.py` (its docstring has the protocol). Settings: "
        f"`{json.dumps(settings)}`, {args.threads} threads. {n} configs, MACs share "
        f"{min(shares):.2f}-{max(shares):.2f}; truth top-1 {truth.min():.3f}-{truth.max():.3f} on the JPEG test "
        f"images (the shipped weights {result['shipped_test_top1']:.3f}, after the JPEG fine-tune "
        f"{result['base_test_top1']:.3f}); {result['truth_seconds_mean']} s per truth run. `none` is pruning alone, "
        f"scored on proxy-val without re-estimating batch-norm statistics.\n\n{table}\n\n"
        + (
            f"The truth against itself (configs {result['truth_vs_itself']['configs']} fine-tuned again "
            f"with seed {args.seed + 1}): Kendall's tau {result['truth_vs_itself']['kendall_tau']}, "
            f"Spearman's rho {result['truth_vs_itself']['spearman_rho']}.\n\n"
            if "truth_vs_itself" in result
            else ""
        )
        + "\n".join(per_config)
        + "\n"
    )
    print(table)


if __name__ == "__main__":
    main()
