"""Turns a chosen trial into a deployable model: fine-tune, save .pt and .onnx, measure, report."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import optuna

from .budget import parse_budget
from .errors import AutopruneError
from .front import SearchResult
from .study import STUDY_NAME, SearchSettings, build_context, completed, make_storage

# How far the measured latency may exceed the budget before the export fails.
TOLERANCE = 0.10


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


def _load_study(req: ExportRequest) -> optuna.Study:
    url = req.storage or f"sqlite:///{Path(req.out) / 'study.db'}"
    if req.storage is None and not (Path(req.out) / "study.db").is_file():
        raise AutopruneError(f"no study in {req.out} (study.db missing): run `autoprune search --out {req.out}` first")
    try:
        return optuna.load_study(study_name=req.study, storage=make_storage(url))
    except KeyError as exc:
        raise AutopruneError(f"no study named '{req.study}' in {url}") from exc


def choose_trial(req: ExportRequest, study: optuna.Study) -> tuple[int, dict[str, int]]:
    if req.trial is not None:
        for t in completed(study):
            if t.number == req.trial:
                return t.number, t.user_attrs["config"]
        raise AutopruneError(f"trial {req.trial} is not a completed trial of this study")
    chosen = SearchResult.load(req.out).select(req.budget)
    return chosen.trial, chosen.config


def export(req: ExportRequest) -> dict:
    """Writes export/model.pt, model.onnx and report.json; raises if the real latency breaks the budget."""
    from .checkpoint import save_pruned
    from .latency import measure_model_ms
    from .metrics import count_macs, count_params
    from .onnx_io import export_onnx
    from .proxy import evaluate_top1, finetune
    from .prune import prune_recorded

    study = _load_study(req)
    settings = SearchSettings(**study.user_attrs["settings"])
    ctx = build_context(settings)
    number, config = choose_trial(req, study)
    trial = study.trials[number]
    out = Path(req.out) / "export"
    out.mkdir(parents=True, exist_ok=True)

    model, removed = prune_recorded(ctx.loaded.model, ctx.space, config, settings.criterion)
    teacher = ctx.loaded.model if req.distill else None
    model = finetune(model, ctx.splits, epochs=req.finetune_epochs, lr=req.lr, teacher=teacher,
                     checkpoint=str(out / "finetune.ckpt"), seed=req.seed)
    model.eval()
    test_accuracy = evaluate_top1(model, ctx.splits.test)
    example = ctx.loaded.example_input(ctx.predictor.table.batch)
    save_pruned(out / "model.pt", model, ctx.loaded.spec, ctx.space, config, removed, {"trial": number})
    export_onnx(model, example, out / "model.onnx")
    table = ctx.predictor.table
    measured_ms, spread = measure_model_ms(model, example, table.backend, table.threads)
    predicted = ctx.predictor.predict(config)
    budget_ms = ctx.budget_ms if req.budget is None else parse_budget(req.budget).to_ms(ctx.unpruned_ms)
    report = {
        "trial": number, "config": config, "budget_ms": budget_ms,
        "predicted_ms": predicted, "measured_ms": measured_ms, "measured_spread_ms": spread,
        "prediction_error": (predicted - measured_ms) / measured_ms,
        "test_accuracy": test_accuracy, "proxy_accuracy": trial.user_attrs.get("proxy_accuracy"),
        "unpruned_test_accuracy": evaluate_top1(ctx.loaded.model, ctx.splits.test),
        "macs": count_macs(model, ctx.loaded.example_input()), "params": count_params(model),
        "finetune_epochs": req.finetune_epochs, "distill": req.distill,
        "backend": table.backend, "threads": table.threads, "batch": table.batch,
        "files": {"model": str(out / "model.pt"), "onnx": str(out / "model.onnx")},
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    if measured_ms > (1 + TOLERANCE) * budget_ms:
        raise AutopruneError(
            f"MEASURED LATENCY {measured_ms:.3f} ms EXCEEDS THE BUDGET {budget_ms:.3f} ms by "
            f"{100 * (measured_ms / budget_ms - 1):.0f}% (predicted {predicted:.3f} ms): the table does not describe "
            f"this device well; re-profile it (report in {out / 'report.json'})"
        )
    return report
