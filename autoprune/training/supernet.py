"""A supernet: the user's trained model fine-tuned once so that every width of its search space runs.

Each searchable group's channels are ranked by HALP's importance (halp-taylor, accumulated batch by batch over
proxy-train) so that width k keeps the k most important; a slice is the model with the rest pruned. Every training
step follows the sandwich rule of slimmable networks (Yu & Huang 2019): the widest model learns from the labels,
then the narrowest and `samples` drawn configs, each masked in place (pruning/masks.py), learn from the widest's
outputs (in-place distillation); their gradients add up before one optimiser step. Configs are drawn as the search
proposes them (a share per stage, each group near it: DRAWS), so training visits where searches look.

It trains on proxy-train only: proxy-val scores a slice on images the supernet never trained on. A slice is
scored after batch-norm re-estimation at its own width (as Once-for-All does), because the statistics the supernet
carries are the widest's. Distillation compares class distributions, so the supernet is for classifiers.
"""
from __future__ import annotations

import copy
import hashlib
import json
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from ..allocation.saliency import SALIENCY_BATCHES, channel_saliency
from ..allocation.widths import KEEP, OFFSET, SHARE, WidthSpace, offset
from ..data.task import TaskData
from ..errors import AutopruneError
from ..pruning.masks import ChannelMasks
from ..pruning.prune import example_input, prune_channels
from ..pruning.space import Config, SearchSpace
from .finetune import batch_stream, read_checkpoint, sgd, write_checkpoint
from .proxies import BN_BATCHES, reestimate_bn

CHECKPOINT_EVERY = 20  # steps: a supernet step is several forward and backward passes


@dataclass(frozen=True)
class SupernetSettings:
    epochs: float = 1.0  # passes over proxy-train
    samples: int = 2  # drawn configs a step, besides the widest and the narrowest
    lr: float = 0.01
    batch_size: int = 128
    seed: int = 0
    importance_batches: int = SALIENCY_BATCHES  # proxy-train batches the channel order is accumulated over
    draws: str = "stages"  # how the sampled configs are drawn (DRAWS)


@dataclass
class Supernet:
    model: nn.Module
    space: SearchSpace
    order: dict[str, list[int]]  # per searchable group, its channels most important first

    def removed(self, config: Config) -> dict[str, list[int]]:
        """The channels a config's slice goes without: each group's tail past its width."""
        full = self.space.complete(config)
        return {name: order[full[name]:] for name, order in self.order.items() if full[name] < len(order)}

    def slice(self, config: Config) -> nn.Module:
        """The config's model with the supernet's weights: a physically pruned copy."""
        return prune_channels(self.model, self.space, self.removed(config))

    def score(self, config: Config, data: TaskData, bn_batches: int = BN_BATCHES, seed: int = 0) -> float:
        """The slice's score on the data (proxy-val for the built-in sources) after re-estimating its batch norms."""
        model = self.slice(config)
        reestimate_bn(model, data.proxy_train, bn_batches, seed=seed)
        return data.score(model.eval())


def channel_order(model: nn.Module, space: SearchSpace, data: TaskData, batches: int = SALIENCY_BATCHES,
                  seed: int = 0) -> dict[str, list[int]]:
    saliency = channel_saliency(model, space, data, "halp-taylor", batches=batches, seed=seed)
    return {name: space.group(name).ranking(v, descending=True) for name, v in saliency.values.items()}


def _keeps(widths: WidthSpace, rng: random.Random) -> dict:
    """Removable blocks drawn as the search's first trials draw them (a quarter removed); none where there are none,
    so a space without blocks draws what it did before they came."""
    return {KEEP + g.name: rng.random() for g in widths.blocks}


def near_uniform(widths: WidthSpace, rng: random.Random) -> Config:
    """One share for every group, each group then a step narrower or wider."""
    share = rng.random()
    return widths.config({**{SHARE + s: share for s in widths.stages()},
                          **{OFFSET + g.name: offset(rng.choice((-1, 0, 1)), len(g.choices) - 1)
                             for g in widths.space.searchable}, **_keeps(widths, rng)})


def by_stages(widths: WidthSpace, rng: random.Random) -> Config:
    """As the search proposes them: a share per stage, each group up to two steps either side of it (a rule like the
    knapsack keeps one stage narrow and another wide, which near-uniform draws never train)."""
    return widths.config({**{SHARE + s: rng.random() for s in widths.stages()},
                          **{OFFSET + g.name: offset(rng.randint(-2, 2), len(g.choices) - 1)
                             for g in widths.space.searchable}, **_keeps(widths, rng)})


DRAWS = {"uniform": near_uniform, "stages": by_stages}


def draw_config(widths: WidthSpace, rng: random.Random, draws: str = "stages") -> Config:
    return DRAWS[draws](widths, rng)


def sandwich_step(supernet: Supernet, widths: WidthSpace, masks: ChannelMasks, data: TaskData, optimiser, scheduler,
                  step: int, settings: SupernetSettings, x: torch.Tensor, y: torch.Tensor) -> float:
    """One optimiser step over the widest model, the narrowest and the drawn configs; returns the widest's loss."""
    model = supernet.model
    torch.manual_seed(settings.seed * 10_007 + step)  # the same draws and dropout on resume
    rng = random.Random(settings.seed * 10_007 + step)
    model.train()
    optimiser.zero_grad(set_to_none=True)
    masks.set({})
    logits = model(x)
    loss = data.loss(logits, y)
    loss.backward()
    teacher = F.log_softmax(logits.detach(), dim=1)
    narrower = [supernet.space.narrowest_config()] + [draw_config(widths, rng, settings.draws)
                                                      for _ in range(settings.samples)]
    for config in narrower:
        masks.set(supernet.removed(config))
        student = F.log_softmax(model(x), dim=1)
        F.kl_div(student, teacher, log_target=True, reduction="batchmean").backward()
    masks.set({})
    optimiser.step()
    scheduler.step()
    return loss.item()


def train_supernet(model: nn.Module, space: SearchSpace, data: TaskData, settings: SupernetSettings = SupernetSettings(),
                   checkpoint: str | Path | None = None, progress: bool = True) -> Supernet:
    """Fine-tunes a copy of `model` as a supernet. With `checkpoint`, a killed run resumes from it and ends with
    the weights an uninterrupted run ends with."""
    total = round(settings.epochs * data.proxy_train.num_batches(settings.batch_size, drop_last=True))
    if total < 1:
        raise AutopruneError(f"a supernet of {settings.epochs} epochs over {len(data.proxy_train)} samples at batch "
                             f"{settings.batch_size} is no step")
    if settings.draws not in DRAWS:
        raise AutopruneError(f"unknown supernet draws '{settings.draws}' (choose {' or '.join(DRAWS)})")
    order = channel_order(model, space, data, settings.importance_batches, settings.seed)
    supernet = Supernet(copy.deepcopy(model), space, order)
    widths = WidthSpace.for_model(model, space, example_input(space))
    masks = ChannelMasks(supernet.model, space)
    optimiser, scheduler = sgd(supernet.model, settings.lr, total)
    run = {"total_steps": total, "supernet": json.dumps(asdict(settings), sort_keys=True), "order": _digest(order)}
    path = Path(checkpoint) if checkpoint else None
    state = read_checkpoint(path, supernet.model, run) if path else None
    start = 0
    if state:
        supernet.model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = int(state["step"])

    def save(step: int) -> None:
        if path:
            write_checkpoint(path, {"model": supernet.model.state_dict(), "optimizer": optimiser.state_dict(),
                                    "scheduler": scheduler.state_dict(), **run, "step": step})

    with tqdm(total=total, initial=start, desc="supernet", unit="step", disable=not progress, dynamic_ncols=True) as bar:
        if start < total:
            for step, x, y in batch_stream(data.proxy_train, settings.batch_size, settings.seed, start):
                loss = sandwich_step(supernet, widths, masks, data, optimiser, scheduler, step, settings, x, y)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}")
                if step + 1 == total:
                    break
                if (step + 1) % CHECKPOINT_EVERY == 0:
                    save(step + 1)
            save(total)
    masks.remove()
    supernet.model.eval()
    return supernet


def _digest(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def save_supernet(supernet: Supernet, path: str | Path, identity: dict) -> None:
    """Weights, channel order and what made them, loadable with weights_only=True."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_checkpoint(path, {"model": supernet.model.state_dict(), "order": supernet.order, "identity": identity})


def load_supernet(path: str | Path, model: nn.Module, space: SearchSpace, identity: dict) -> Supernet:
    """The supernet stored at `path`, refused in one line when it was made from another model, data or settings."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        stored, weights, order = state["identity"], state["model"], state["order"]
    except Exception as exc:  # a torn or foreign file: any reason it cannot be read is the same message
        raise AutopruneError(f"cannot read the supernet {path}: {type(exc).__name__} {exc}") from exc
    if stored != identity:
        differ = sorted(k for k in set(stored) | set(identity) if stored.get(k) != identity.get(k))
        raise AutopruneError(f"supernet {path} was made with other settings ({', '.join(differ)} differ): "
                             "remove it, or make one with these settings")
    supernet = Supernet(copy.deepcopy(model), space, {name: [int(i) for i in v] for name, v in order.items()})
    supernet.model.load_state_dict(weights)
    supernet.model.eval()
    return supernet


def supernet_for(model: nn.Module, space: SearchSpace, data: TaskData, settings: SupernetSettings, identity: dict,
                 folder: str | Path, progress: bool = True) -> Supernet:
    """The cached supernet of this model, data and settings, trained (resumably) the first time it is asked for.

    `identity` names what the weights and data are (a digest of each): with the settings and the space it keys
    the cache, so a search at another budget reuses the supernet and any other change trains a new one."""
    full = {**identity, "space": _digest(space.to_dict()), "settings": asdict(settings)}
    path = Path(folder) / f"supernet-{_digest(full)}.pt"
    if path.is_file():
        return load_supernet(path, model, space, full)
    if progress:
        print(f"autoprune: no supernet for this model, data and space yet: fine-tuning one now ({settings.epochs:g} "
              f"epoch(s) of proxy-train, once; a search at another budget reuses it), cached as {path}",
              file=sys.stderr, flush=True)
    supernet = train_supernet(model, space, data, settings, checkpoint=path.with_name(path.stem + ".ckpt"),
                              progress=progress)
    save_supernet(supernet, path, full)
    path.with_name(path.stem + ".ckpt").unlink(missing_ok=True)
    return supernet
