"""SearchSpace: what of a model may be pruned, as groups, and the kept counts each may take.

A group is of a kind: "channels" (channels that must go together; kept is how many stay) or "block" (a residual
block's branch, blocks.py; kept is 1, or 0 where it goes). A config is {group: kept} whatever the kinds.
"""
from __future__ import annotations

import fnmatch
import math
import random
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch.nn as nn
import torch_pruning as tp
import torch
import yaml

from ..errors import AutopruneError
from .blocks import BLOCK, removable_blocks
from .graph import build_graph
from ..models.complexity import count_params, macs_by_module
from ..models.specs import LoadedModel

Config = dict[str, int]
CHANNELS = "channels"


@dataclass
class Granularity:
    """Which kept counts a group may take.

    `multiple_of` (e.g. 8, what vector units like) wins over `steps` (kept = k/steps of the width) and allows every
    multiple; `align` keeps the k/steps widths, each rounded to a multiple of it (at least one multiple), so a
    precision's preferred multiple (precision.py) costs no more kernels than the float space has.
    No group keeps fewer than `min_keep` of its channels, nor fewer than `least` (or its width, if narrower).
    """

    steps: int = 8
    multiple_of: int | None = None
    min_keep: float = 0.125
    align: int | None = None
    least: int = 1

    def __post_init__(self):
        if self.steps < 1 or (self.multiple_of is not None and self.multiple_of < 1) or not 0 < self.min_keep <= 1:
            raise AutopruneError("--steps and --multiple-of must be positive and --min-keep in (0, 1]")

    def choices(self, channels: int, blocks: int = 1) -> list[int]:
        """The kept counts of a group of `channels`; a grouped convolution's `blocks` make each a multiple of them."""
        floor = max(1, min(self.least, channels), math.ceil(self.min_keep * channels - 1e-9))
        if self.multiple_of:
            unit = math.lcm(self.multiple_of, blocks)
            counts = set(range(unit, channels + 1, unit))
        else:
            counts = {max(1, round(channels * k / self.steps)) for k in range(1, self.steps + 1)}
            unit = math.lcm(self.align or 1, blocks)
            if unit > 1:
                counts = {min(channels, max(unit, unit * round(c / unit))) for c in counts}
        return sorted({c for c in counts if c >= floor} | {channels})


LATER_GRANULARITY = {"align": None, "least": 1}  # field -> the value that means what earlier releases did


@dataclass
class Group:
    """Channels that must be pruned together, named after the first layer (in model order) producing them."""

    name: str
    channels: int
    choices: list[int]
    macs_share: float  # share of the model's MACs in layers whose width this group sets
    producers: list[str] = field(default_factory=list)  # layers whose output channels are this group
    consumers: list[str] = field(default_factory=list)  # layers whose input channels are this group
    frozen: bool = False
    why_frozen: str | None = None
    # A grouped convolution splits the channels into this many equal blocks, and its weight has one input column per
    # position within a block: every block keeps the same positions, so a kept count is a multiple of it.
    blocks: int = 1
    kind: str = CHANNELS

    def ranking(self, scores, descending: bool = False) -> list[int]:
        """The channels ordered by `scores` (least important first, or most with `descending`; ties in channel
        order). With blocks, a position is ranked by its mean score over the blocks and brings all its channels."""
        scores = torch.as_tensor(scores, dtype=torch.float32)
        width = self.channels // self.blocks
        order = torch.argsort(scores.view(self.blocks, width).mean(0), descending=descending, stable=True)
        return [b * width + int(p) for p in order for b in range(self.blocks)]


@dataclass
class SearchSpace:
    model: str
    input_shape: list[int]
    granularity: Granularity
    macs: int
    params: int
    groups: list[Group]

    def group(self, name: str) -> Group:
        for g in self.groups:
            if g.name == name:
                return g
        raise AutopruneError(f"unknown group '{name}' for {self.model} (groups: {self._names_hint()})")

    def _names_hint(self) -> str:
        names = [g.name for g in self.groups]
        return ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")

    @property
    def searchable(self) -> list[Group]:
        return [g for g in self.groups if not g.frozen and len(g.choices) > 1]

    @property
    def channel_groups(self) -> list[Group]:
        """The groups of channels (the ones a dependency graph holds), searchable or not."""
        return [g for g in self.groups if g.kind == CHANNELS]

    def channel_widths(self) -> Config:
        """Each group of channels' full width: what a latency table's layout is checked against (blocks change which
        of its layers run, not their channels)."""
        return {g.name: g.channels for g in self.channel_groups}

    def searchable_of(self, kind: str) -> list[Group]:
        return [g for g in self.searchable if g.kind == kind]

    def removed_blocks(self, config: Config) -> list[Group]:
        """The blocks `config` removes (a block it does not name stays)."""
        return [g for g in self.groups if g.kind == BLOCK and config.get(g.name, 1) == 0]

    def switched_off(self, config: Config) -> set[str]:
        """The layers that run no kernel in `config`: those of its removed blocks."""
        return {layer for g in self.removed_blocks(config) for layer in g.producers}

    def capped(self, widths: Config) -> "SearchSpace":
        """This space with each named group's choices cut at its width there (a schedule that only narrows)."""
        groups = [replace(g, choices=[c for c in g.choices if c <= widths.get(g.name, g.channels)]) for g in self.groups]
        return replace(self, groups=groups)

    def full_config(self) -> Config:
        return {g.name: g.channels for g in self.groups}

    def narrowest_config(self) -> Config:
        return {g.name: g.choices[0] for g in self.groups}

    def complete(self, config: Config) -> Config:
        """Checks a (possibly partial) config and fills unnamed groups with their full width."""
        full = self.full_config()
        for name, kept in config.items():
            group = self.group(name)
            if not isinstance(kept, int) or isinstance(kept, bool):
                raise AutopruneError(f"group '{name}': kept channels must be an integer, got {kept!r}")
            if group.frozen and kept != group.channels:
                raise AutopruneError(f"group '{name}' is frozen at {group.channels} channels, config asks {kept}")
            if kept not in group.choices:
                raise AutopruneError(f"group '{name}': {kept} channels is not allowed (choices: {group.choices})")
            full[name] = kept
        return full

    def random_config(self, rng: random.Random) -> Config:
        return {g.name: rng.choice(g.choices) for g in self.groups}

    def to_dict(self) -> dict:
        data = asdict(self)
        # Likewise a group's blocks (grouped convolutions' groups) and kind (blocks'), written where not the default.
        for group in data["groups"]:
            if group["blocks"] == 1:
                del group["blocks"]
            if group["kind"] == CHANNELS:
                del group["kind"]
        # Granularity fields added in later releases are written only when set, so a space file, and the digest a
        # stored study keeps of its space, stay as an earlier release wrote them.
        data["granularity"] = {k: v for k, v in data["granularity"].items()
                               if k not in LATER_GRANULARITY or v != LATER_GRANULARITY[k]}
        return data

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, data: dict) -> "SearchSpace":
        try:
            groups = [Group(**g) for g in data["groups"]]
            space = cls(
                model=str(data["model"]),
                input_shape=[int(v) for v in data["input_shape"]],
                granularity=Granularity(**data["granularity"]),
                macs=int(data["macs"]),
                params=int(data["params"]),
                groups=groups,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AutopruneError(f"not a search space: {type(exc).__name__} {exc}") from exc
        for g in space.groups:
            if g.kind not in (CHANNELS, BLOCK):
                raise AutopruneError(f"group '{g.name}': unknown kind '{g.kind}' (kinds: {CHANNELS}, {BLOCK})")
            least = 0 if g.kind == BLOCK else 1  # a block may go whole; a group of channels keeps one at least
            if not g.choices or g.channels not in g.choices or any(c < least or c > g.channels for c in g.choices):
                raise AutopruneError(f"group '{g.name}': choices {g.choices} must lie in {least}..{g.channels} "
                                     "and include it")
            if g.blocks < 1 or any(c % g.blocks for c in g.choices):
                raise AutopruneError(f"group '{g.name}': choices {g.choices} must be multiples of its {g.blocks} blocks")
        return space

    @classmethod
    def load(cls, path: str | Path) -> "SearchSpace":
        path = Path(path)
        if not path.is_file():
            raise AutopruneError(f"search space file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise AutopruneError(f"malformed YAML in {path}: {str(exc).splitlines()[0]}") from exc
        if not isinstance(data, dict):
            raise AutopruneError(f"{path} is not a search space (expected a mapping at the top)")
        try:
            return cls.from_dict(data)
        except AutopruneError as exc:
            raise AutopruneError(f"{path}: {exc}") from exc


def _reaches_output(dg: tp.DependencyGraph, group) -> bool:
    # The model's output is either an explicit output node or a layer that feeds nothing.
    return any(
        dep.target.type == tp.ops.OPTYPE.OUTPUT or (dg.is_out_channel_pruning_fn(dep.handler) and not dep.target.outputs)
        for dep, _ in group
    )


def _name(dg: tp.DependencyGraph, node) -> str | None:
    return dg._module2name.get(node.module) if isinstance(node.module, nn.Module) else None


def graph_groups(model: nn.Module, dg: tp.DependencyGraph) -> dict[str, object]:
    """The dependency graph's channel groups that may be pruned, keyed by their stable name.

    A group that reaches the model's output (the classifier) is left out: the class count is fixed.
    """
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    named = {}
    for group in dg.get_all_groups(root_module_types=(nn.Conv2d, nn.Linear)):
        if _reaches_output(dg, group):
            continue
        size = len(group[0].idxs)
        full_producers = [
            _name(dg, dep.target)
            for dep, idxs in group
            if isinstance(dep.target.module, (nn.Conv2d, nn.Linear))
            and dg.is_out_channel_pruning_fn(dep.handler)
            and len(idxs) == size
        ]
        name = min(full_producers, key=order.get) if full_producers else _name(dg, group[0].dep.target)
        named[name] = group
    return dict(sorted(named.items(), key=lambda kv: order.get(kv[0], len(order))))


def _members(dg: tp.DependencyGraph, group, order: dict[str, int]) -> tuple[list[str], list[str]]:
    producers, consumers = [], []
    for dep, _ in group:
        name = _name(dg, dep.target)
        if not name:
            continue  # torch-pruning's placeholders for adds, concats and views
        side = producers if dg.is_out_channel_pruning_fn(dep.handler) else consumers
        if name not in side:
            side.append(name)
    return sorted(producers, key=order.get), sorted(consumers, key=order.get)


def _is_grouped_conv(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and 1 < module.groups < module.in_channels


def _blocks(modules: dict[str, nn.Module], producers: list[str], consumers: list[str], channels: int) -> int | None:
    """How many blocks grouped convolutions split the group into; None where one of them sees more than the group
    (a concat of groups), whose blocks would not line up with it."""
    blocks = 1
    for names, side in ((producers, "out_channels"), (consumers, "in_channels")):
        for m in names:
            if _is_grouped_conv(modules[m]):
                if getattr(modules[m], side) != channels:
                    return None
                blocks = math.lcm(blocks, modules[m].groups)
    return blocks


def build_space(
    loaded: LoadedModel, granularity: Granularity | None = None, freeze: list[str] | tuple[str, ...] = (),
    depth: bool = False,
) -> SearchSpace:
    """Traces the model and lists its channel groups, and with `depth` its removable blocks (after them, in model
    order); `freeze` holds group names or glob patterns."""
    granularity = granularity or Granularity()
    example = loaded.example_input()
    dg = build_graph(loaded.model, example)
    macs = macs_by_module(loaded.model, example)
    total = macs[""]
    groups = []
    modules = dict(loaded.model.named_modules())
    order = {name: i for i, name in enumerate(modules)}
    for name, group in graph_groups(loaded.model, dg).items():
        producers, consumers = _members(dg, group, order)
        touched = set(producers) | set(consumers)
        channels = len(group[0].idxs)
        why = "frozen by the user" if any(fnmatch.fnmatchcase(name, p) for p in freeze) else None
        blocks = _blocks(modules, producers, consumers, channels)
        if blocks is None:
            why, blocks = "a grouped convolution reads these channels together with other groups' channels", 1
        groups.append(
            Group(
                name=name,
                channels=channels,
                choices=[channels] if why else granularity.choices(channels, blocks),
                macs_share=round(sum(macs.get(m, 0) for m in touched) / total, 6),
                producers=producers,
                consumers=consumers,
                frozen=why is not None,
                why_frozen=why,
                blocks=blocks,
            )
        )
    if depth:
        groups += _block_groups(loaded.model, macs, total, freeze)
    unknown = [p for p in freeze if not any(fnmatch.fnmatchcase(g.name, p) for g in groups)]
    if unknown:
        raise AutopruneError(f"--freeze '{unknown[0]}' matches no group of {loaded.spec}")
    return SearchSpace(loaded.spec, list(loaded.input_shape), granularity, int(total), count_params(loaded.model), groups)


def _block_groups(model: nn.Module, macs: dict, total: int, freeze) -> list[Group]:
    groups = []
    for name, layers in removable_blocks(model).items():
        frozen = any(fnmatch.fnmatchcase(name, p) for p in freeze)
        groups.append(Group(name=name, channels=1, choices=[1] if frozen else [0, 1],
                            macs_share=round(sum(macs.get(m, 0) for m in layers) / total, 6), producers=layers,
                            frozen=frozen, why_frozen="frozen by the user" if frozen else None, kind=BLOCK))
    return groups


def space_for(loaded: LoadedModel, space_file: str | None = None, granularity: Granularity | None = None,
              freeze: list[str] | tuple[str, ...] = (), depth: bool = False) -> SearchSpace:
    """The space saved in `space_file` (which must be this model's), or the one traced from the model."""
    if space_file:
        space = SearchSpace.load(space_file)
        if space.model != loaded.spec:
            raise AutopruneError(f"search space {space_file} is for {space.model}, not {loaded.spec}")
        return space
    return build_space(loaded, granularity, freeze, depth)
