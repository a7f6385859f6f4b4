"""Turns a chosen trial into a deployable model: fine-tune, save .pt and .onnx, measure, report.

With a table from another device (its fingerprint differs from this machine's), nothing is timed here: the
export writes a timing kit for that device and a report whose measurement is pending; `complete_export`
(`autoprune export --measured result.json`) reads what the kit measured and finishes the check, warning when the
result's fingerprint is not the table's (the kit was run on the wrong machine).
"""
from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .budget import measured_within, parse_budget
from .defaults import STUDY_NAME
from .errors import AutopruneError, LatencyCheckFailed
from .latency.fingerprint import FIELDS, differences, this_machine
from .latency.predict import ForeignTableWarning
from .models.specs import LoadedModel
from .precision import PRECISIONS, calibration_samples
from .training.schedule import ConfigGoal, parse_schedule, progressive_finetune
from .pruning.space import Config
from .study import read_result, reopen
from .study.result import completed, lane_of
from .data.task import TaskData



@dataclass
class ExportRequest:
    out: str
    trial: int | None = None
    budget: str | None = None
    finetune_epochs: float = 1.0
    lr: float = 0.01
    distill: bool = False
    storage: str | None = None
    study: str = STUDY_NAME
    seed: int = 0
    schedule: str = "one-shot"  # or "progressive[:EVENTS]" (training/schedule.py)
    int8: bool = False  # also write model.int8.onnx (implied when the table is an int8 one)


@dataclass
class ExportReport:
    """What report.json holds: the exported model's score and its latency, measured here and predicted."""

    trial: int
    config: Config
    budget_ms: float
    predicted_ms: float
    measured_ms: float | None  # None while the measurement on another device is pending
    measured_spread_ms: float | None
    prediction_error: float | None  # (predicted - measured) / measured
    test_accuracy: float  # the data's test score (top-1 on the test split, or the user's metric)
    proxy_accuracy: float | None
    unpruned_test_accuracy: float
    macs: int
    params: int
    finetune_epochs: float
    distill: bool
    schedule: str
    backend: str
    threads: int
    batch: int
    files: dict[str, str] = field(default_factory=dict)
    measured_on: dict | None = None  # the fingerprint of the machine that timed it
    pending: str | None = None  # what to run on the table's device, while its measurement is pending
    table_device: dict | None = None  # the fingerprint of the machine the table was measured on
    dtype: str = "float32"  # the precision the table predicts and `measured_ms` times
    # Per precision written (float32, and int8 where asked): test accuracy and ms measured here, and the file.
    precisions: dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def record(self, measured_ms: float, spread: float, device: dict) -> None:
        self.measured_ms, self.measured_spread_ms, self.measured_on = measured_ms, spread, device
        self.prediction_error = (self.predicted_ms - measured_ms) / measured_ms
        self.pending = None

    def save(self, folder: Path) -> None:
        (folder / "report.json").write_text(json.dumps(self.to_dict(), indent=2))

    def check(self, folder: Path) -> "ExportReport":
        """Raises LatencyCheckFailed when the measured latency breaks the budget by more than the tolerance."""
        if self.measured_ms is not None and not measured_within(self.measured_ms, self.budget_ms):
            raise LatencyCheckFailed(
                f"MEASURED LATENCY {self.measured_ms:.3f} ms EXCEEDS THE BUDGET {self.budget_ms:.3f} ms by "
                f"{100 * (self.measured_ms / self.budget_ms - 1):.0f}% (predicted {self.predicted_ms:.3f} ms): the "
                f"table does not describe this device well; re-profile it (report in {folder / 'report.json'})"
            )
        return self


def choose_trial(req: ExportRequest, study) -> tuple[int, Config]:
    if req.trial is not None:
        for t in completed(study):
            if t.number == req.trial:
                return t.number, t.user_attrs["config"]
        raise AutopruneError(f"trial {req.trial} is not a completed trial of this study")
    chosen = read_result(req.out).select(req.budget)
    return chosen.trial, chosen.config


def export(req: ExportRequest, loaded: LoadedModel | None = None, data: TaskData | None = None) -> ExportReport:
    """Writes export/model.pt, model.onnx and report.json; raises LatencyCheckFailed if the real latency
    breaks the budget. A study searched on objects needs the same model (and data) passed again."""
    from .pruning.pruned_files import save_pruned
    from .latency import measure_model_ms
    from .latency.backends import get_backend
    from .latency.kit import write_timing_kit
    from .models.complexity import count_macs, count_params
    from .models.onnx_io import OnnxModule, export_onnx
    from .training.finetune import finetune
    from .training.proxies import BN_BATCHES, reestimate_bn

    if req.finetune_epochs < 0:
        raise AutopruneError(f"--finetune-epochs must be 0 or more, not {req.finetune_epochs:g}")
    study, lanes = reopen(req.out, req.storage, req.study, loaded, data)
    number, config = choose_trial(req, study)
    trial = study.trials[number]
    ctx = lanes[lane_of(trial, lanes)]  # the precision the member was searched, and is deployed, in
    out = Path(req.out) / "export"
    out.mkdir(parents=True, exist_ok=True)

    teacher = ctx.loaded.model if req.distill else None
    tuning = dict(epochs=req.finetune_epochs, lr=req.lr, teacher=teacher, checkpoint=str(out / "finetune.ckpt"),
                  seed=req.seed)
    plan = parse_schedule(req.schedule)
    if plan is not None:
        # Toward the trial's own widths: the front's prediction (and the budget check) hold for the result.
        model, _, removed = progressive_finetune(ctx.loaded.model, ctx.space, ConfigGoal(config), ctx.data,
                                                 plan=plan, **tuning)
    else:
        # The supernet's slice where the search was scored by one, else the trained model pruned by the criterion.
        model, removed = ctx.prune(config)
        if req.finetune_epochs > 0:
            model = finetune(model, ctx.data, **tuning).eval()
        else:  # as the search scored it: batch norms re-estimated at its widths, no training
            reestimate_bn(model, ctx.data.proxy_train, BN_BATCHES, seed=ctx.settings.seed)
    table = ctx.predictor.table
    deployed = table.precision
    example = ctx.loaded.example_input(table.batch)
    save_pruned(out / "model.pt", model, ctx.loaded.spec, ctx.space, config, removed, {"trial": number})
    files = {"float32": export_onnx(model, example, out / "model.onnx", dynamic_batch=True)}
    if req.int8 or deployed.quantised:
        int8 = PRECISIONS["int8"]
        get_backend(table.backend, int8, here=False)  # one line where the table's backend cannot run int8
        files[int8.name] = out / "model.int8.onnx"
        samples = calibration_samples(ctx.data.proxy_train, req.seed)
        files[int8.name].write_bytes(int8.onnx_bytes(model, example, dynamic_batch=True, samples=samples))
    scores = {name: ctx.data.test_score(model if name == "float32" else OnnxModule(path)) for name, path in files.items()}
    reference_ms = next(iter(lanes.values())).unpruned_ms  # a relative budget's: float32, as the user has it
    budget_ms = ctx.budget_ms if req.budget is None else parse_budget(req.budget).to_ms(reference_ms)
    report = ExportReport(
        number, config, budget_ms, ctx.predictor.predict(config), None, None, None,
        scores.get(deployed.name, scores["float32"]), trial.user_attrs.get("proxy_accuracy"),
        ctx.data.test_score(ctx.loaded.model), count_macs(model, ctx.loaded.example_input()), count_params(model),
        req.finetune_epochs, req.distill, req.schedule, table.backend, table.threads, table.batch,
        {"model": str(out / "model.pt"), "onnx": str(files["float32"]),
         **({"int8": str(files["int8"])} if "int8" in files else {})},
    )
    report.table_device = {k: table.device.get(k) for k in FIELDS}
    report.dtype = deployed.name
    report.precisions = {name: {"test_accuracy": scores[name], "file": str(path)} for name, path in files.items()}
    backend = get_backend(table.backend, here=False)
    # Timing here would check this machine against another's table; another runtime version on the same
    # hardware is still timed here (the check then shows what the upgrade did).
    if table.foreign(software=False):
        timed = out / "timed.onnx"
        timed.write_bytes(deployed.onnx_bytes(model, example))  # as the table was measured: its shapes, precision
        kit, command = write_timing_kit(timed, out / "timing-kit.zip", table.threads, backend.provider, req.out)
        timed.unlink()
        report.files["timing_kit"] = str(kit)
        report.pending = f"on {table.device.get('cpu')} ({table.backend}): unzip {kit.name} and run: {command}"
        report.save(out)
        return report
    for name in files:  # every precision written, timed here alike; the table's is the one checked
        ms, spread = measure_model_ms(model, example, table.backend, table.threads, precision=PRECISIONS[name])
        report.precisions[name].update(measured_ms=ms, measured_spread_ms=spread)
    if deployed.name not in report.precisions:  # a float16 table: its export is timed in float16
        ms, spread = measure_model_ms(model, example, table.backend, table.threads, precision=deployed)
    else:
        ms, spread = (report.precisions[deployed.name][k] for k in ("measured_ms", "measured_spread_ms"))
    report.record(ms, spread, this_machine(backend.gpu_name()))
    report.save(out)
    return report.check(out)


def complete_export(out: str | Path, result: str | Path) -> ExportReport:
    """Reads what a timing kit measured on the table's device and finishes the export's latency check."""
    folder = Path(out) / "export"
    path = folder / "report.json"
    if not path.is_file():
        raise AutopruneError(f"no export in {out} (export/report.json missing): run `autoprune export --out {out}`")
    report = ExportReport(**{"schedule": "one-shot", **json.loads(path.read_text())})  # reports from before schedules
    try:
        measured = json.loads(Path(result).read_text())
        stats, device = measured["stats"][0], measured["device"]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise AutopruneError(f"{result} is not what the timing kit writes (runner.py --time ... --json): {exc}") from exc
    elsewhere = differences(report.table_device or {}, device)
    if elsewhere:  # the kit was run on the wrong machine: the check would compare two devices
        warnings.warn(f"{result} was timed on another machine than the table's ({'; '.join(elsewhere)}): run the "
                      "kit on the table's device for a check that means something", ForeignTableWarning, stacklevel=2)
    report.record(stats["ms"], stats["spread"], device)
    report.save(folder)
    return report.check(folder)
