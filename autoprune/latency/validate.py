"""`autoprune validate`: the predictor against end-to-end measurements of random pruned configs."""
from __future__ import annotations

import random
import sys
from pathlib import Path

from tqdm import tqdm

from ..models.specs import LoadedModel
from ..pruning.prune import prune
from ..pruning.space import SearchSpace
from .measure import measure_models_ms
from .predict import LatencyPredictor
from .runner import STEADY, error_figures
from .table import LatencyTable

# Validation configs come from their own seed, never the calibration's (profile uses seed 0).
DEFAULT_SEED = 12345


def validate(loaded: LoadedModel, space: SearchSpace, table: LatencyTable, samples: int = 30, seed: int = DEFAULT_SEED,
             rounds: int = STEADY["rounds"], per_round: int = STEADY["per_round"], save: bool = True,
             plot: str | Path | None = None) -> dict:
    """Measures `samples` random configs on the table's backend in its precision, returns the error figures and,
    with `save`, stores them in the table under its model. `space` must be in the table's precision too (its widths:
    latency.choose.table_and_space builds it so)."""
    predictor = LatencyPredictor(table, space)
    rng = random.Random(seed)
    configs = [space.random_config(rng) for _ in range(samples)]
    predicted = [predictor.predict(c) for c in configs]
    models = [prune(loaded.model, space, c) for c in tqdm(configs, desc="pruning", unit="model", file=sys.stderr)]
    print(f"timing {samples} models end to end on {table.backend} in {table.precision}", file=sys.stderr)
    stats = measure_models_ms(models, loaded.example_input(table.batch), table.backend, table.device["threads"],
                              rounds, per_round, table.precision)
    measured = [ms for ms, _ in stats]
    figures = {**error_figures(predicted, measured), "seed": seed, "dtype": table.precision.name,
               "predicted_ms": [round(p, 4) for p in predicted], "measured_ms": [round(m, 4) for m in measured]}
    if save:
        table.model(predictor.key)["validation"] = figures
        table.save()
    if plot:
        scatter(predicted, measured, figures, f"{space.model} on {table.backend}", plot)
    return figures


def scatter(predicted, measured, figures: dict, title: str, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(measured, predicted, s=14)
    lo, hi = min(min(predicted), min(measured)), max(max(predicted), max(measured))
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="exact")
    for f in (0.95, 1.05):
        ax.plot([lo, hi], [lo * f, hi * f], "k:", lw=0.6)
    ax.set_xlabel("measured ms")
    ax.set_ylabel("predicted ms")
    ax.set_title(f"{title}\nMAPE {figures['mape_pct']:.2f}%, tau {figures['kendall_tau']:.3f} (dotted: ±5%)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
