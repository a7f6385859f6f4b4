"""The `autoprune` command: parses arguments and calls the API; user mistakes become one line on stderr."""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from .errors import AutopruneError, LatencyCheckFailed
from .models import parse_input_shape
from .proxy import DEFAULT_PROXY
from .saliency import SALIENCIES

DEFAULT_MODEL = "cifar:resnet56"


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help=f"model spec (default: {DEFAULT_MODEL} with its shipped weights)")
    p.add_argument("--weights", default=None, help="checkpoint file (state dict), or 'shipped'")
    p.add_argument("--input-shape", default=None, help="override the input size, e.g. 3x224x224")


def _add_space_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", default=None, help="a search-space YAML (from `inspect --save`) instead of the default")
    p.add_argument("--steps", type=int, default=8, help="kept counts are k/STEPS of a group's width (default 8)")
    p.add_argument("--multiple-of", type=int, default=None, help="kept counts are multiples of N instead")
    p.add_argument("--min-keep", type=float, default=0.125, help="never keep less than this share (default 0.125)")
    p.add_argument("--freeze", action="append", default=[], metavar="GROUP", help="never prune this group (glob)")


def load_from_args(args):
    from .api import load

    args.model = args.model or DEFAULT_MODEL
    return load(args.model, args.weights, input_shape=args.input_shape)


def space_from_args(args, loaded):
    from .space import Granularity, space_for

    return space_for(loaded, getattr(args, "space", None), Granularity(args.steps, args.multiple_of, args.min_keep),
                     args.freeze)


def cmd_inspect(args) -> int:
    from .report import format_space
    from .verify import verify_space

    loaded = load_from_args(args)
    space = space_from_args(args, loaded)
    print(format_space(space))
    if args.verify:
        failures = verify_space(loaded.model, space)
        if failures:
            for line in failures:
                print(f"autoprune: pruning check failed: {line}", file=sys.stderr)
            return 1
        print("pruning check: every checkable group removes exactly the chosen channels")
    if args.save:
        space.save(args.save)
        print(f"saved search space to {args.save}")
    return 0


def _slug(spec: str) -> str:
    return spec.rsplit("/", 1)[-1].replace(":", "_").replace(".py", "")


def settings_from_args(args):
    from .study import SearchSettings

    model, weights = args.model, args.weights
    if model is None:
        model, weights = DEFAULT_MODEL, weights or "shipped"
    elif weights is None and not (":" in model and model.split(":")[0] not in ("torchvision", "cifar")):
        raise AutopruneError(
            f"--weights is required to search {model}: with random weights there is no accuracy to keep"
        )
    if args.trials < 1 or args.workers < 1:
        raise AutopruneError("--trials and --workers must be at least 1")
    shape = list(parse_input_shape(args.input_shape)) if args.input_shape else None
    return SearchSettings(
        budget=args.budget, margin=args.margin, model=model, weights=weights, input_shape=shape, data=args.data, table=args.table,
        force_table=args.force, proxy=args.proxy, distill=args.distill, saliency=args.saliency,
        criterion=args.criterion, sampler=args.sampler,
        trials=args.trials, seed=args.seed, steps=args.steps, multiple_of=args.multiple_of,
        min_keep=args.min_keep, freeze=args.freeze, space_file=args.space,
    )


def cmd_search(args) -> int:
    from .study import format_front, run_search

    settings = settings_from_args(args)
    out = args.out or f"runs/{_slug(settings.model)}"
    result = run_search(settings, out, storage=args.storage, study_name=args.study, workers=args.workers)
    print(format_front(result))
    print(f"front, plots and pruned models in {out}/ (pareto.json, pareto.csv, pareto.png, pareto.html, front/)")
    return 0


def cmd_knapsack(args) -> int:
    from .study import build_context

    ctx = build_context(settings_from_args(args))
    config = ctx.allocation.config({})
    print(json.dumps(config))
    print(f"predicted {ctx.predictor.predict(config):.3f} ms (target {ctx.target_ms:.3f} ms, budget {ctx.budget_ms:.3f} ms, unpruned "
          f"{ctx.unpruned_ms:.3f} ms), {ctx.settings.saliency} saliency", file=sys.stderr)
    if args.save:
        Path(args.save).write_text(json.dumps(config, indent=1) + "\n")
    return 0


def cmd_pareto(args) -> int:
    from .study import format_front, read_result

    print(format_front(read_result(args.out)))
    return 0


def cmd_export(args) -> int:
    from .deploy import ExportRequest, complete_export, export

    if args.out is None:
        raise AutopruneError("--out is required: the run directory of the search to export from")
    if args.trial is not None and args.budget is not None:
        raise AutopruneError("give --trial or --budget, not both")
    if args.measured:
        report = complete_export(args.out, args.measured)
    else:
        report = export(ExportRequest(
            out=args.out, trial=args.trial, budget=args.budget, finetune_epochs=args.finetune_epochs, lr=args.lr,
            distill=args.distill, storage=args.storage, study=args.study, seed=args.seed,
        ))
        print(f"trial {report.trial}: test accuracy {100 * report.test_accuracy:.2f}% "
              f"(unpruned {100 * report.unpruned_test_accuracy:.2f}%); wrote {report.files['model']}, "
              f"{report.files['onnx']} and report.json")
    if report.pending:
        print(f"latency: predicted {report.predicted_ms:.3f} ms, budget {report.budget_ms:.3f} ms; the table is "
              f"another device's, so the measurement is pending {report.pending}; then "
              f"`autoprune export --out {args.out} --measured result.json`")
        return 0
    print(f"latency measured {report.measured_ms:.3f} ms on {report.measured_on.get('cpu')} vs predicted "
          f"{report.predicted_ms:.3f} ms ({100 * report.prediction_error:+.1f}%), budget {report.budget_ms:.3f} ms")
    return 0


def _add_table_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--table", required=True, help="latency table JSON (from `autoprune profile`)")
    p.add_argument("--backend", default=None, help="refuse a table measured on another backend")
    p.add_argument("--batch", type=int, default=None, help="refuse a table measured at another batch size")
    p.add_argument("--force", action="store_true", help="use a table whose backend or batch does not match")


def _load_table(args):
    from .latency import LatencyTable

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = LatencyTable.load(args.table, args.backend, args.batch, args.force)
    _print_warnings(caught)
    return table


def _print_warnings(caught) -> None:
    for message in dict.fromkeys(str(w.message) for w in caught):
        print(f"autoprune: warning: {message}", file=sys.stderr)


def cmd_profile(args) -> int:
    from .latency.profile import profile

    if (args.out is None) == (args.kit is None):
        raise AutopruneError("give exactly one of --out TABLE (measure here) or --kit FILE (for another device)")
    loaded = load_from_args(args)
    space = space_from_args(args, loaded)
    settings = {k: v for k, v in (("repeats", args.repeats), ("warmup", args.warmup)) if v is not None}
    path = profile(loaded, space, args.backend, args.out, args.threads, args.batch, args.dtype, args.calibration,
                   args.validate, args.kit, args.seed, settings)
    if args.kit:
        print(f"wrote kit {path}: unzip it on the device and run `python3 runner.py . --out table.json`")
        return 0
    if args.validate:  # measured by the runner right after calibration, in the same fresh process
        from .latency import LatencyTable
        from .latency.layout import model_key

        figures = LatencyTable.load(path).model(model_key(space))["validation"]
        print(_figures_line(space.model, args.backend, figures))
    print(f"wrote {path}")
    return 0


def _figures_line(model: str, backend: str, f: dict) -> str:
    return (f"{model} on {backend} ({f['n']} random configs): MAPE {f['mape_pct']:.2f}%, worst {f['worst_pct']:+.2f}%, "
            f"within 5% {f['within_5pct']:.0%}, within 10% {f['within_10pct']:.0%}, Kendall tau {f['kendall_tau']:.3f}")


def _read_config(path: str | None) -> dict:
    if path is None:
        return {}
    try:
        config = json.loads(Path(path).read_text())
    except OSError as exc:
        raise AutopruneError(f"cannot read config {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise AutopruneError(f"config {path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise AutopruneError(f"config {path} must be a JSON object {{group: kept channels}}")
    return config


def cmd_predict(args) -> int:
    from .latency import LatencyPredictor

    loaded = load_from_args(args)
    space = space_from_args(args, loaded)
    table = _load_table(args)
    config = space.complete(_read_config(args.config))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictor = LatencyPredictor(table, space, strict=args.strict)
        ms = predictor.predict(config)
        parts = predictor.breakdown(config)
    _print_warnings(caught)
    d = table.device
    print(f"{space.model}: predicted {ms:.3f} ms per forward pass ({d['backend']} {d['backend_version']}, "
          f"{d['threads']} thread(s), batch {d['batch']}, {d['cpu']})")
    shown = sorted(parts.items(), key=lambda kv: -abs(kv[1]))[: args.top or None]
    width = max(len(name) for name, _ in shown)
    for name, part in shown:
        print(f"  {name:<{width}}  {part:9.4f} ms  {part / ms * 100:5.1f}%")
    return 0


def _validate(args, loaded, space) -> int:
    from .latency.validate import validate

    table = _load_table(args)
    figures = validate(loaded, space, table, args.samples, args.seed, save=not args.no_save, plot=args.plot)
    print(_figures_line(space.model, table.backend, figures))
    if not args.no_save:
        print(f"stored the figures in {args.table}")
    if args.plot:
        print(f"wrote {args.plot}")
    return 0


def cmd_rescale(args) -> int:
    from .latency.rescale import rescale

    if args.configs < 2:
        raise AutopruneError("--configs must be at least 2")
    loaded = load_from_args(args)
    table, figures = rescale(loaded, space_from_args(args, loaded), _load_table(args), args.out, args.configs,
                             args.seed)
    before, after = figures["before"], figures["after"]
    print(f"{loaded.spec}: scale {figures['scale']:.3f}; on {after['n']} configs timed here MAPE "
          f"{before['mape_pct']:.1f}% -> {after['mape_pct']:.1f}%, worst {before['worst_pct']:+.1f}% -> "
          f"{after['worst_pct']:+.1f}%")
    print(f"wrote {table.path}")
    return 0


def cmd_validate(args) -> int:
    from .latency.validate import DEFAULT_SEED

    if args.samples < 2:
        raise AutopruneError("--samples must be at least 2")
    args.seed = DEFAULT_SEED if args.seed is None else args.seed
    loaded = load_from_args(args)
    return _validate(args, loaded, space_from_args(args, loaded))


COMMANDS = {
    "inspect": ("print a model's prunable channel groups and save its search space", cmd_inspect),
    "profile": ("measure a latency table on this machine, or write a kit for another device", cmd_profile),
    "predict": ("predicted latency of a model or a config, per layer", cmd_predict),
    "validate": ("measure random configs end to end and report the predictor's error", cmd_validate),
    "rescale": ("adapt a table from another machine to this one: a few models timed here, one factor",
                cmd_rescale),
    "knapsack": ("one-shot allocation: the latency-saliency knapsack's config at a budget, no accuracy spent",
                 cmd_knapsack),
    "search": ("search the Pareto front of accuracy vs latency under a budget", cmd_search),
    "pareto": ("print the front of a finished search", cmd_pareto),
    "export": ("fine-tune, save and check a chosen pruned model", cmd_export),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autoprune", description="Hardware-aware automated channel pruning for PyTorch CNNs."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parsers = {name: sub.add_parser(name, help=text, description=text) for name, (text, _) in COMMANDS.items()}

    p = parsers["inspect"]
    _add_model_args(p)
    _add_space_args(p)
    p.add_argument("--save", default=None, help="write the search space as YAML")
    p.add_argument("--verify", action="store_true", help="check on random channels that pruning is exact")

    p = parsers["profile"]
    _add_model_args(p)
    _add_space_args(p)
    p.add_argument("--backend", default="ort-cpu", help="ort-cpu (default), torch-cpu, ort-cuda or torch-cuda")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--dtype", default="float32", help="float32 (default); float16 on torch-cuda")
    p.add_argument("--out", default=None, help="table JSON to write, or to grow if it exists")
    p.add_argument("--kit", default=None, help="instead of measuring here, write a zip to measure on another device")
    p.add_argument("--calibration", type=int, default=30, help="random configs timed end to end to calibrate (30)")
    p.add_argument("--validate", type=int, default=20, metavar="N",
                   help="also time N random configs (those `validate` draws) and store the figures: the held-out "
                        "error that --margin auto and the front's likely range read (default 20, 0: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration configs")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per kernel (default 50)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs per kernel (default 10)")

    p = parsers["rescale"]
    _add_model_args(p)
    _add_space_args(p)
    _add_table_args(p)
    p.add_argument("--out", required=True, help="the table for this machine to write")
    p.add_argument("--configs", type=int, default=8, help="models timed here: the unpruned one and N-1 pruned (8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the pruned configs")

    p = parsers["predict"]
    _add_model_args(p)
    _add_space_args(p)
    _add_table_args(p)
    p.add_argument("--config", default=None, help="JSON {group: kept channels}; default: the unpruned model")
    p.add_argument("--strict", action="store_true", help="refuse kernels missing from the table (no interpolation)")
    p.add_argument("--top", type=int, default=15, help="show the N largest parts of the breakdown (0: all)")

    p = parsers["validate"]
    _add_model_args(p)
    _add_space_args(p)
    _add_table_args(p)
    p.add_argument("--samples", type=int, default=30, help="random configs to measure (default 30)")
    p.add_argument("--seed", type=int, default=None, help="seed of the random configs")
    p.add_argument("--plot", default=None, help="write a PNG scatter of predicted vs measured")
    p.add_argument("--no-save", action="store_true", help="do not store the figures in the table")

    for name in ("search", "knapsack"):
        p = parsers[name]
        _add_model_args(p)
        _add_space_args(p)
        p.add_argument("--budget", required=True, help="latency budget: 30ms, 500us, 0.03s, or 0.5x of the unpruned model")
        p.add_argument("--margin", default="0",
                       help="stay this far under the budget: auto (from the table's held-out error), 0.05 or 5%%")
        p.add_argument("--data", default="cifar10-mini", help="cifar10-mini (shipped), imagefolder:DIR or cifar10:DIR")
        p.add_argument("--table", default=None, help="latency table (default: the shipped one holding the model)")
        p.add_argument("--force", action="store_true", help="use a table measured with other settings anyway")
        p.add_argument("--saliency", default="taylor", choices=SALIENCIES,
                       help="what a channel is worth to the knapsack (default taylor, over proxy-train batches)")
        p.add_argument("--seed", type=int, default=0)
    p = parsers["knapsack"]
    p.add_argument("--save", default=None, help="also write the config as JSON (for predict --config)")
    p.set_defaults(proxy=DEFAULT_PROXY, distill=False, criterion="l1", sampler="tpe", trials=1, workers=1)
    p = parsers["search"]
    p.add_argument("--proxy", default=DEFAULT_PROXY,
                   help=f"score of a candidate: a ladder of fidelities (default {DEFAULT_PROXY}), adaptive-bn[:N] or "
                        "finetune:STEPS")
    p.add_argument("--distill", action="store_true", help="fine-tuning proxies distil from the unpruned model")
    p.add_argument("--criterion", default="l1", help="which channels go: l1, l2, bn-scale, random, taylor")
    p.add_argument("--sampler", default="tpe", choices=["tpe", "nsga2"])
    p.add_argument("--trials", type=int, default=40,
                   help="candidates to look at, scored in full or stopped early (default 40)")
    _add_run_args(p)
    p.add_argument("--workers", type=int, default=1, help="processes on this machine sharing the study")

    p = parsers["pareto"]
    p.add_argument("--out", required=True, help="the run directory of a search")

    p = parsers["export"]
    _add_run_args(p)
    p.add_argument("--trial", type=int, default=None, help="the trial to export")
    p.add_argument("--budget", default=None, help="export the most accurate front member within this budget")
    p.add_argument("--finetune-epochs", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--distill", action="store_true", help="distil from the unpruned model while fine-tuning")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--measured", default=None, metavar="RESULT",
                   help="complete a pending export with the result.json its timing kit wrote on the device")
    return parser


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None, help="run directory (default runs/<model>)")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default: sqlite in the run directory)")
    p.add_argument("--study", default="autoprune", help="study name inside the storage")


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"autoprune: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _one_line_warning
    try:
        return COMMANDS[args.command][1](args)
    except LatencyCheckFailed as exc:  # the command ran; its check failed (1), unlike a user mistake (2)
        print(f"autoprune {args.command}: {exc}", file=sys.stderr)
        return 1
    except AutopruneError as exc:
        print(f"autoprune {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"autoprune {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
