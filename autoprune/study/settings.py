"""SearchSettings: everything that defines a search, stored in the study so a resume or an export rebuilds it."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from .. import defaults
from ..pruning.importance import RENAMED
from ..training.proxies import DEFAULT_PROXY


@dataclass
class SearchSettings:
    budget: str = "0.5x"
    margin: str = "0"  # the search stays this far under the budget: a share, a percentage, or auto (the table's)
    model: str = defaults.DEFAULT_MODEL  # a model spec, or "module:<class>" for a model passed as an object
    weights: str | None = defaults.SHIPPED  # a file, 'shipped', or "sha256:<digest>" of an object's weights
    input_shape: list[int] | None = None
    data: str = "cifar10-mini"  # a data source, or "user:<type>" for the user's Dataset/DataLoader
    table: str | None = None  # None: this machine's own (latency/choose.py), 'shipped', or a file
    backend: str | None = None  # this machine's own table is measured with it (None: ort-cpu); a named table must match
    threads: int | None = None  # of this machine's own table (None: 1)
    # The precision (precision.py) candidates are deployed, scored and timed in. None: a named table's own, else each
    # one this machine's backend times (ort-cpu: float32 and int8), all on one front (context.build_contexts).
    dtype: str | None = None
    force_table: bool = False
    # What scores a candidate (evaluators.py): the proxy ladder, or the supernet's slice (its ranking is not yet better:
    # benchmarks/results/supernet_fidelity*.md).
    evaluator: str = "ladder"
    supernet_epochs: float = 1.0  # the supernet's fine-tune, in passes over proxy-train
    supernet_samples: int = 2  # configs drawn a step besides the widest and the narrowest
    proxy: str = DEFAULT_PROXY  # the ladder's stages, for evaluator 'ladder'
    distill: bool = False
    saliency: str = "halp-taylor"  # the channel scores the knapsack allocates widths by (pruning/importance.py)
    criterion: str = "knapsack"  # which channels go: those the knapsack's saliency values least, or a named rule
    sampler: str = "tpe"
    trials: int = 40
    measure: bool = True  # fit each trial to this machine's clock, time the front (timing.py); off on a busy machine
    seed: int = 0
    steps: int = 8
    multiple_of: int | None = None
    min_keep: float = 0.125
    freeze: list[str] = field(default_factory=list)
    depth: bool = False  # also search removing residual blocks whose shortcut is the identity (pruning/blocks.py)
    space_file: str | None = None

    # Settings that may change between runs of one study without changing what its trials mean. Not the seed: it
    # draws the proxy's split of the data, the saliency's batches and the proxy's batch order, so an export rebuilt
    # with another one would prune other channels than the search scored.
    RUN_ONLY = ("trials", "sampler", "measure")

    def __post_init__(self):
        self.saliency, self.criterion = in_current_names({"saliency": self.saliency, "criterion": self.criterion}).values()

    def defining(self) -> dict:
        """The settings a resumed study must share with the stored ones."""
        return {k: v for k, v in asdict(self).items() if k not in self.RUN_ONLY}


# What a study stored by an earlier release was run with, where it does not say: those releases sampled the
# knapsack's knobs and scored candidates with the ladder.
EARLIER = {"evaluator": "ladder", "search_space": "knobs"}
SEARCH_SPACE = "widths"  # what the sampler proposes now (allocation/widths.py)


def in_current_names(settings: dict) -> dict:
    """`settings` with its criteria named as the registry names them now: a study stored by an earlier release
    names them as it did ('taylor', 'saliency')."""
    roles = {"saliency": "saliency", "criterion": "pruning"}
    return {k: RENAMED[roles[k]].get(v, v) if k in roles else v for k, v in settings.items()}


def as_stored(stored: dict) -> dict:
    """A study's stored settings with what an earlier release left unsaid filled in: its own defaults where it had
    the setting, the current defaults for settings that came after it."""
    earlier = EARLIER if "evaluator" not in stored else {}
    settings = in_current_names({**SearchSettings().defining(), **earlier, **stored})
    if earlier and settings.get("dtype") is None and settings.get("table") is None:
        settings["dtype"] = "float32"  # those releases searched one precision: float32 on this machine's own table
    return settings


def digest(data) -> str:
    """A short content hash of JSON-able data: two studies whose spaces differ in any group never match."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
