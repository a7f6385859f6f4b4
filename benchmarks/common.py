"""What the benchmarks share besides the timing harness (harness.py) and the JPEG fine-tune protocol (jpeg_protocol.py):
where a run keeps its state, the resumable pieces, and the reports under benchmarks/results/."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
STATE_ENV = "AUTOPRUNE_BENCH_STATE"  # the folder every benchmark's state goes under, one subfolder each


def default_state(name: str) -> Path:
    """$AUTOPRUNE_BENCH_STATE/NAME, else ~/.cache/autoprune-bench/NAME: outside the repository."""
    return Path(os.environ.get(STATE_ENV) or Path.home() / ".cache" / "autoprune-bench") / name


def add_state_argument(parser, name: str) -> None:
    parser.add_argument("--state", default=None, help=f"the run's state, kept so that a stopped run resumes "
                        f"(default: ${STATE_ENV}/{name}, else ~/.cache/autoprune-bench/{name})")


def state_dir(given: str | None, name: str) -> Path:
    """The run's state folder (made); never under benchmarks/results/, which keeps reports only."""
    path = (Path(given) if given else default_state(name)).expanduser().resolve()
    if path == RESULTS or RESULTS in path.parents:
        raise SystemExit(f"--state {path}: benchmarks/results/ keeps reports only; give a folder outside it")
    path.mkdir(parents=True, exist_ok=True)
    return path


def bisect(fits, failing: float, fitting: float, steps: int = 14) -> float:
    """The boundary between a knob value that does not fit and one that does; returns the fitting side."""
    for _ in range(steps):
        mid = (failing + fitting) / 2
        if fits(mid):
            fitting = mid
        else:
            failing = mid
    return fitting


def retarget_margin(measured_ms: float, limit_ms: float, predicted_ms: float, target_ms: float) -> str:
    """The --margin that would have put a candidate measured over the limit within it: its search's target scaled by
    how far it measured over the limit and how far its prediction sat under the target (measured taken to scale
    with predicted)."""
    return f"{(measured_ms / limit_ms) * (target_ms / predicted_ms) - 1:.4f}"


class Pieces:
    """A JSON file of finished results, saved after each one, so that a benchmark resumes where it stopped.

    A run stops before starting a new piece after `max_seconds`: on a shared machine, run it again until
    it finishes.
    """

    def __init__(self, path: Path, max_seconds: float = float("inf")):
        self.path, self.start, self.max_seconds = path, time.time(), max_seconds
        self.done = json.loads(path.read_text()) if path.exists() else {}

    def get(self, key: str, compute):
        if key not in self.done:
            if time.time() - self.start > self.max_seconds:
                raise SystemExit(f"stopped at --max-seconds before '{key}': run again to continue")
            self.done[key] = compute()
            self._save()
        return self.done[key]

    def drop(self, *keys: str) -> None:
        """Forgets pieces whose inputs changed, so that the next `get` computes them again."""
        for key in keys:
            self.done.pop(key, None)
        self._save()

    def _save(self) -> None:
        partial = self.path.with_suffix(".partial")  # a run killed while writing keeps the previous file
        partial.write_text(json.dumps(self.done, indent=1))
        partial.replace(self.path)


def described(machine: dict) -> str:
    """A machine (latency.fingerprint.this_machine) as the reports name it."""
    return f"{machine['cpu']} ({machine['cores']} cores, ISA {' '.join(machine['isa'])})"


def write_results(name: str, data: dict, lines: list[str]) -> str:
    """benchmarks/results/NAME.json (the figures) and NAME.md (the table people read); prints the table."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=1))
    text = "\n".join(lines) + "\n"
    (RESULTS / f"{name}.md").write_text(text)
    print(text)
    return text


def search_like(widths, predictor, saliency, rng, low: float, high: float) -> dict:
    """What a search proposes before its sampler has learnt anything: a random point of the width space (Optuna's
    random sampler, as a study's first trials), repaired down to a random target between `low` and `high` of the
    unpruned model's predicted latency (never below what the space reaches)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=rng.randrange(2**31)))
    sampled = widths.suggest(study.ask())
    unpruned = predictor.predict(widths.space.full_config())
    narrowest = predictor.predict(widths.space.narrowest_config())
    return widths.repair(sampled, predictor, saliency, max(rng.uniform(low, high) * unpruned, 1.02 * narrowest))
