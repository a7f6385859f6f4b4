"""Does a proxy rank pruned cifar:resnet56 candidates the way a longer fine-tune does?

Protocol (the full one is the default; every cost is a flag so that a smaller one fits a small machine):
 1. base: the shipped ResNet-56 fine-tuned for --base-epochs on the CIFAR-10 JPEG train set, so that the
    model and the data share one domain (the published weights lose about 5 points on JPEG pixels);
 2. configs, each pruning every group by its own random amount around a common level that is bisected
    until the shipped latency table predicts the wanted share of the unpruned model's latency:
    - the spread set: --configs of them at evenly spaced shares over --spread;
    - the equal-latency set: --equal-latency of them all at --equal-share, which is the choice the search
      actually faces (at one latency, where should the channels go?), where the latency share says nothing;
 3. each proxy scores each pruned config on its proxy-val part of the JPEG train set (a ladder such as the
    search's default, adaptive-bn>finetune:20, by its last stage, with the seconds of all its stages);
 4. truth: each pruned config fine-tuned for --truth-epochs on the JPEG train set (L1 pruning from the base,
    cosine schedule), then top-1 on the JPEG test set (--test-size images of it, 0 = all 10,000); the
    equal-latency set's truth once more with another seed, which bounds how well anything can rank it;
 5. per set, Kendall's tau and Spearman's rho between each proxy's scores and the truth, and seconds per
    evaluation; a scatter plot of the default proxy against the truth.

Every finished piece is kept under --state (keyed by the settings), and a run stops starting new pieces
after --max-seconds: on a shared machine, run it again until it prints the table, e.g.
    flock /work/cpu.lock python benchmarks/proxy_fidelity.py --max-seconds 540
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from autoprune.latency import LatencyPredictor
from autoprune.latency.fingerprint import this_machine
from autoprune.models.complexity import count_macs
from autoprune.training.finetune import finetune
from autoprune.training.proxies import DEFAULT_PROXY, make_ladder
from autoprune.data.task import evaluate_top1
from autoprune.pruning.prune import prune
from autoprune.pruning.space import build_space
from autoprune.latency.choose import choose_table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, Pieces, add_state_argument, described, state_dir  # noqa: E402
from jpeg_protocol import BASE_EPOCHS, MODEL, add_jpeg_argument, jpeg_data, make_base  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_jpeg_argument(p)
    add_state_argument(p, "proxy_fidelity")
    p.add_argument("--configs", type=int, default=20, help="configs in the spread set")
    p.add_argument("--spread", type=float, nargs=2, default=(0.3, 0.8), help="latency share range of the spread set")
    p.add_argument("--equal-latency", type=int, default=8, help="configs in the equal-latency set (0: none)")
    p.add_argument("--equal-share", type=float, default=0.55, help="latency share of the equal-latency set")
    p.add_argument("--noise", type=float, default=0.15, help="sd of each group's keep ratio around the common level")
    p.add_argument("--proxies", default=f"{DEFAULT_PROXY},adaptive-bn,adaptive-bn:16,finetune:20",
                   help="comma-separated proxy specs (the first is plotted)")
    p.add_argument("--base-epochs", type=float, default=BASE_EPOCHS)
    p.add_argument("--truth-epochs", type=float, default=1.0)
    p.add_argument("--test-size", type=int, default=0, help="JPEG test images for the truth, 0 = all")
    p.add_argument("--repeat-truth", type=int, default=2,
                   help="fine-tune the first N of the equal-latency set again with another seed (the truth's own noise)")
    p.add_argument("--reuse-truth", default=None, metavar="JSON",
                   help="take the truths from an earlier proxy_fidelity.json of the same settings (its configs must "
                        "match these): scores new proxies without repeating 28 fine-tunes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-seconds", type=float, default=float("inf"), help="start no new piece after this")
    return p.parse_args()


def config_at(space, predictor, full_ms: float, share: float, noise: float, rng: random.Random,
              tolerance: float = 0.01) -> dict:
    """A config whose predicted latency is within `tolerance` of `share` of `full_ms`, the unpruned model's.

    Each group keeps (level + its own noise) of its channels and the level is bisected, so configs at one
    share differ in where they prune, not in how fast they run. A width change can cross one of the
    backend's block sizes and jump the latency past the target: then the noise is drawn again.
    """
    best, best_miss = None, float("inf")
    for _ in range(50):
        offsets = {g.name: rng.gauss(0.0, noise) for g in space.searchable}

        def at(level: float) -> dict:
            keep = {g.name: min(1.0, max(0.0, level + offsets[g.name])) * g.channels for g in space.searchable}
            return {g.name: min(g.choices, key=lambda c: abs(c - keep[g.name])) for g in space.searchable}

        low, high = -1.0, 2.0
        for _ in range(40):
            mid = (low + high) / 2
            low, high = (mid, high) if predictor.predict(at(mid)) < share * full_ms else (low, mid)
        for config in (at(low), at(high)):
            miss = abs(predictor.predict(config) / full_ms - share)
            if miss < best_miss:
                best, best_miss = config, miss
        if best_miss <= tolerance * share:
            break
    return best


def make_configs(space, predictor, base, args) -> list[dict]:
    rng = random.Random(args.seed)
    example = torch.randn(1, *space.input_shape)
    full_ms, full_macs = predictor.predict(space.full_config()), count_macs(base, example)
    low, high = args.spread
    targets = [("spread", low + (high - low) * (i + 0.5) / args.configs) for i in range(args.configs)]
    targets += [("equal", args.equal_share)] * args.equal_latency
    configs = []
    for kind, share in targets:
        config = config_at(space, predictor, full_ms, share, args.noise, rng)
        configs.append({
            "set": kind,
            "config": config,
            "latency_share": round(predictor.predict(config) / full_ms, 4),
            "macs_share": round(count_macs(prune(base, space, config), example) / full_macs, 4),
        })
    return configs


def timed(run):
    start = time.perf_counter()
    accuracy = run()
    return {"accuracy": accuracy, "seconds": time.perf_counter() - start}


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    keyed = ("configs", "spread", "equal_latency", "equal_share", "noise", "base_epochs", "truth_epochs", "test_size", "seed")
    settings = {k: v for k, v in vars(args).items() if k in keyed}
    key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    state = state_dir(args.state, "proxy_fidelity")
    work = state / key
    work.mkdir(parents=True, exist_ok=True)
    pieces = Pieces(work / "pieces.json", args.max_seconds)

    shipped, splits = jpeg_data(args.jpeg, state, args.seed)
    test = splits.test.sample(args.test_size, args.seed) if args.test_size else splits.test
    pieces.get("shipped_test", lambda: evaluate_top1(shipped.model, test))
    loaded = make_base(shipped, splits, work / "base.pt", args.base_epochs, args.seed, work / "base.ckpt")
    base = loaded.model.eval()
    pieces.get("base_test", lambda: evaluate_top1(base, test))
    space = build_space(loaded)
    predictor = LatencyPredictor(choose_table(None, loaded, space), space)  # this machine's own, as search uses
    configs = pieces.get("configs", lambda: make_configs(space, predictor, base, args))
    if args.reuse_truth:
        reuse_truth(Path(args.reuse_truth), configs, settings, pieces)

    specs = ["none"] + args.proxies.split(",")
    for spec in specs:
        for i, c in enumerate(configs):
            def score(spec=spec, c=c):
                pruned = prune(base, space, c["config"])
                if spec == "none":  # pruning alone, no BN re-estimation: what the proxies improve on
                    return timed(lambda: evaluate_top1(pruned, splits.proxy_val))
                # A ladder scores with its last stage; every stage's seconds count (no candidate is stopped here).
                stages = [proxy.evaluate(pruned, splits) for proxy in make_ladder(spec, seed=args.seed)]
                return {"accuracy": stages[-1].accuracy, "seconds": sum(r.seconds for r in stages)}

            print(f"proxy/{spec}/{i}: {pieces.get(f'proxy/{spec}/{i}', score)}")

    def truth(i: int, kind: str, seed: int):
        def tuned_top1():
            pruned = prune(base, space, configs[i]["config"])
            finetune(pruned, splits, epochs=args.truth_epochs, checkpoint=work / f"{kind}-{i}.ckpt", seed=seed,
                     progress=False)
            return evaluate_top1(pruned, test)

        print(f"{kind}/{i}: {pieces.get(f'{kind}/{i}', lambda: timed(tuned_top1))}")

    for i in range(len(configs)):
        truth(i, "truth", args.seed)
    # Another seed (batch order, augmentation) for the equal-latency set: how far the truth agrees with itself.
    for i in repeated(configs, args.repeat_truth):
        truth(i, "truth-again", args.seed + 1)
    report(args, settings, pieces.done, specs)


def reuse_truth(path: Path, configs: list[dict], settings: dict, pieces: Pieces) -> None:
    """Copies the truths of an earlier run whose settings and regenerated configs are these."""
    earlier = json.loads(path.read_text())
    same = earlier["settings"] == json.loads(json.dumps(settings)) and len(earlier["configs"]) == len(configs) and all(
        abs(a["latency_share"] - b["latency_share"]) < 1e-4 and abs(a["macs_share"] - b["macs_share"]) < 1e-4
        for a, b in zip(earlier["configs"], configs))
    if not same:
        raise SystemExit(f"{path} was made with other settings or configs: its truths do not apply")
    seconds = earlier["truth_seconds_median"]
    for i, c in enumerate(earlier["configs"]):
        pieces.done.setdefault(f"truth/{i}", {"accuracy": c["truth_top1"], "seconds": seconds})
        if "truth_again_top1" in c:
            pieces.done.setdefault(f"truth-again/{i}", {"accuracy": c["truth_again_top1"], "seconds": seconds})
    pieces.done["truth_from"] = {"file": str(path), "base_test_then": earlier["base_test_top1"]}


def repeated(configs: list[dict], count: int) -> list[int]:
    return [i for i, c in enumerate(configs) if c["set"] == "equal"][:count]


def rank_rows(scored: dict[str, list[dict]], truth: np.ndarray) -> list[dict]:
    return [
        {
            "proxy": name,
            "kendall_tau": round(float(stats.kendalltau([s["accuracy"] for s in rows], truth).statistic), 3),
            "spearman_rho": round(float(stats.spearmanr([s["accuracy"] for s in rows], truth).statistic), 3),
            "seconds_per_eval": round(float(np.mean([s["seconds"] for s in rows])), 2),
        }
        for name, rows in scored.items()
    ]


def report(args, settings: dict, done: dict, specs: list[str]) -> None:
    configs = done["configs"]
    sets = {}
    for kind in ("spread", "equal"):
        index = [i for i, c in enumerate(configs) if c["set"] == kind]
        if len(index) < 3:
            continue
        truth = np.array([done[f"truth/{i}"]["accuracy"] for i in index])
        # A config's size alone ranks a spread of sizes well: the floor any proxy must beat there.
        scored = {
            "latency share alone": [{"accuracy": configs[i]["latency_share"], "seconds": 0.0} for i in index],
            "MACs share alone": [{"accuracy": configs[i]["macs_share"], "seconds": 0.0} for i in index],
        }
        scored.update({spec: [done[f"proxy/{spec}/{i}"] for i in index] for spec in specs})
        sets[kind] = {"configs": index, "truth_top1": truth.round(4).tolist(), "ranking": rank_rows(scored, truth)}

    result = {
        "model": MODEL,
        "machine": this_machine(),
        "settings": settings,
        "threads": args.threads,
        "shipped_test_top1": done["shipped_test"],
        "base_test_top1": done["base_test"],
        "truth_from": done.get("truth_from"),
        "truth_seconds_median": round(float(np.median([done[f"truth/{i}"]["seconds"] for i in range(len(configs))])), 1),
        "sets": sets,
        "configs": [
            {k: c[k] for k in ("set", "latency_share", "macs_share")}
            | {"truth_top1": done[f"truth/{i}"]["accuracy"]}
            | ({"truth_again_top1": done[f"truth-again/{i}"]["accuracy"]} if f"truth-again/{i}" in done else {})
            | {spec: round(done[f"proxy/{spec}/{i}"]["accuracy"], 4) for spec in specs}
            for i, c in enumerate(configs)
        ],
    }
    again = [i for i in range(len(configs)) if f"truth-again/{i}" in done]
    if len(again) >= 2:  # how far the truth agrees with itself bounds how well anything can rank
        first = np.array([done[f"truth/{i}"]["accuracy"] for i in again])
        second = np.array([done[f"truth-again/{i}"]["accuracy"] for i in again])
        result["truth_again"] = {
            "configs": again,
            "seed": args.seed + 1,
            "mean_abs_difference": round(float(np.abs(first - second).mean()), 4),
            "kendall_tau": round(float(stats.kendalltau(first, second).statistic), 3),
        }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "proxy_fidelity.json").write_text(json.dumps(result, indent=1))
    plot(result, specs[1], RESULTS / "proxy_fidelity.png")

    titles = {
        "spread": f"Spread set: {len(sets.get('spread', {}).get('configs', []))} configs over "
                  f"{args.spread[0]:g}-{args.spread[1]:g} of the unpruned latency",
        "equal": f"Equal-latency set: {len(sets.get('equal', {}).get('configs', []))} configs at "
                 f"{args.equal_share:g} of the unpruned latency",
    }
    tables = []
    for kind, s in sets.items():
        truth = s["truth_top1"]
        tables.append(
            f"### {titles[kind]} (truth top-1 {min(truth):.3f}-{max(truth):.3f})\n\n"
            "| proxy | Kendall's tau | Spearman's rho | seconds per evaluation |\n|---|---|---|---|\n"
            + "\n".join(f"| {r['proxy']} | {r['kendall_tau']} | {r['spearman_rho']} | {r['seconds_per_eval']} |"
                        for r in s["ranking"])
        )
    per_config = [
        "| config | set | latency share | MACs share | truth top-1 | truth again | " + " | ".join(specs) + " |",
        "|---" * (6 + len(specs)) + "|",
        *[
            f"| {i} | {c['set']} | {c['latency_share']:.3f} | {c['macs_share']:.3f} | {c['truth_top1']:.4f} | "
            + (f"{c['truth_again_top1']:.4f} | " if "truth_again_top1" in c else "- | ")
            + " | ".join(f"{c[spec]:.3f}" for spec in specs) + " |"
            for i, c in enumerate(result["configs"])
        ],
    ]
    (RESULTS / "proxy_fidelity.md").write_text(
        f"# Proxy fidelity: {MODEL}\n\n"
        f"Written by `benchmarks/proxy_fidelity.py` on {described(result['machine'])} (its docstring has the "
        "protocol). Settings: "
        f"`{json.dumps(settings)}`, {args.threads} threads. Latency shares are predicted by the shipped ORT CPU "
        f"table. Truth: top-1 on the JPEG test images after the fine-tune (the shipped weights "
        f"{result['shipped_test_top1']:.3f} there, after the JPEG fine-tune of the base "
        f"{result['base_test_top1']:.3f}); {result['truth_seconds_median']} s per truth run (median). `none` is pruning alone, "
        f"scored on proxy-val without re-estimating batch-norm statistics; the size rows rank by size alone.\n\n"
        + (f"Truths reused (`--reuse-truth`) from a run with the same settings and configs, whose base scored "
           f"{result['truth_from']['base_test_then']:.4f} (this base: {result['base_test_top1']:.4f}).\n\n"
           if result["truth_from"] else "")
        + "\n\n".join(tables)
        + (
            f"\n\nThe truth against itself: configs {result['truth_again']['configs']} fine-tuned again with seed "
            f"{result['truth_again']['seed']} differ from the first fine-tune by "
            f"{100 * result['truth_again']['mean_abs_difference']:.2f} points of top-1 on average (Kendall's tau "
            f"{result['truth_again']['kendall_tau']} between the two)."
            if "truth_again" in result
            else ""
        )
        + f"\n\n![{specs[1]} against the truth](proxy_fidelity.png)\n\n"
        + "\n".join(per_config)
        + "\n"
    )
    print("\n\n".join(tables))


def plot(result: dict, spec: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for kind, marker in (("spread", "o"), ("equal", "s")):
        points = [c for c in result["configs"] if c["set"] == kind]
        if points:
            ranking = {r["proxy"]: r for r in result["sets"][kind]["ranking"]} if kind in result["sets"] else {}
            tau = f", tau {ranking[spec]['kendall_tau']}" if spec in ranking else ""
            ax.scatter([c[spec] for c in points], [c["truth_top1"] for c in points], marker=marker,
                       label=f"{kind} set ({len(points)}{tau})")
    ax.set_xlabel(f"{spec} proxy top-1 (proxy-val)")
    ax.set_ylabel("top-1 after the fine-tune (JPEG test)")
    ax.set_title(f"{result['model']}: proxy against truth")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
