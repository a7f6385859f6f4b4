"""Config -> a physically smaller copy of the model; importance criteria choose which channels go."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch_pruning as tp

from .errors import AutopruneError
from .graph import build_graph
from .space import Config, SearchSpace, graph_groups

# An importance criterion scores every channel of a torch-pruning group; higher means keep.
Criterion = Callable[[object], torch.Tensor]


@dataclass(frozen=True)
class CriterionKind:
    make: Callable[[], Criterion] | None  # None: the scores come with the call (the knapsack's saliency)
    needs_batch: bool = False  # scores from gradients: the caller passes a batch of (inputs, targets)

    @property
    def uses_saliency(self) -> bool:
        return self.make is None


CRITERIA: dict[str, CriterionKind] = {
    # The channels the knapsack valued least go: it chose the widths by the same scores (HALP keeps what it values).
    "saliency": CriterionKind(None),
    "l1": CriterionKind(lambda: tp.importance.MagnitudeImportance(p=1)),
    "l2": CriterionKind(lambda: tp.importance.MagnitudeImportance(p=2)),
    "bn-scale": CriterionKind(lambda: tp.importance.BNScaleImportance()),
    "random": CriterionKind(lambda: tp.importance.RandomImportance()),
    "taylor": CriterionKind(lambda: tp.importance.TaylorImportance(), needs_batch=True),
}


def criterion_kind(name: str) -> CriterionKind:
    if name not in CRITERIA:
        raise AutopruneError(f"unknown criterion '{name}' (choose from {', '.join(CRITERIA)})")
    return CRITERIA[name]


def example_input(space: SearchSpace, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, *space.input_shape, generator=torch.Generator().manual_seed(0))


def prune_channels(model: nn.Module, space: SearchSpace, removed: dict[str, list[int]]) -> nn.Module:
    """Returns a copy of `model` without the listed channel indices of each group (the original is untouched)."""
    pruned = copy.deepcopy(model).eval()
    dg = build_graph(pruned, example_input(space))
    groups = graph_groups(pruned, dg)
    _check_matches(space, groups)
    for name, idxs in removed.items():
        if not idxs:
            continue
        root = groups[name][0].dep.target.module
        pruner = dg.get_pruner_of_module(root)
        dg.get_pruning_group(root, pruner.prune_out_channels, sorted(int(i) for i in idxs)).prune()
    return pruned


def _check_matches(space: SearchSpace, groups: dict) -> None:
    for g in space.groups:
        if g.name not in groups or len(groups[g.name][0].idxs) != g.channels:
            raise AutopruneError(f"search space does not fit this model: group '{g.name}' ({g.channels} channels)")


def channels_to_remove(
    model: nn.Module,
    space: SearchSpace,
    config: Config,
    criterion: str | Criterion = "l1",
    batch: tuple[torch.Tensor, torch.Tensor] | None = None,
    seed: int = 0,
    loss: Callable = F.cross_entropy,
    saliency: dict[str, list[float]] | None = None,
) -> dict[str, list[int]]:
    """Scores each group's channels with `criterion` and picks the least important to reach `config`;
    criterion "saliency" takes the scores of `saliency` ({group: per-channel score in channel order})."""
    full = space.complete(config)
    kind = criterion_kind(criterion) if isinstance(criterion, str) else CriterionKind(lambda: criterion)
    if kind.uses_saliency:
        if saliency is None:
            raise AutopruneError("the saliency criterion needs the knapsack's channel scores")
        score = lambda name, group: torch.tensor(saliency[name])  # noqa: E731
    else:
        rule = kind.make()
        score = lambda name, group: rule(group)  # noqa: E731
    needs_grad = kind.needs_batch
    scored = copy.deepcopy(model).eval()
    torch.manual_seed(seed)
    dg = build_graph(scored, example_input(space))
    if needs_grad:
        if batch is None:
            raise AutopruneError("the taylor criterion needs a batch of data (images, labels)")
        scored.zero_grad()
        loss(scored(batch[0]), batch[1]).backward()
    removed = {}
    for name, group in graph_groups(scored, dg).items():
        drop = space.group(name).channels - full[name]
        if drop <= 0:
            continue
        scores = score(name, group)
        if scores is None:  # no weights to score (e.g. a parameter-free group): keep the first channels
            scores = torch.arange(len(group[0].idxs), 0, -1, dtype=torch.float)
        removed[name] = torch.argsort(scores)[:drop].tolist()
    return removed


def prune_recorded(model: nn.Module, space: SearchSpace, config: Config, criterion: str | Criterion = "l1",
                   **scoring) -> tuple[nn.Module, dict[str, list[int]]]:
    """`prune`, also returning the removed indices, which rebuild the same architecture (see checkpoint)."""
    removed = channels_to_remove(model, space, config, criterion, **scoring)
    return prune_channels(model, space, removed), removed


def prune(model: nn.Module, space: SearchSpace, config: Config, criterion: str | Criterion = "l1",
          **scoring) -> nn.Module:
    """A new model keeping exactly `config[group]` channels per group (unnamed groups stay whole); `scoring`:
    the batch, seed and loss of channels_to_remove, for criteria that score from gradients."""
    return prune_recorded(model, space, config, criterion, **scoring)[0]
