"""The `autoprune` command: parses arguments and calls the API; user mistakes become one line on stderr."""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from . import api, defaults
from .errors import AutopruneError, LatencyCheckFailed
from .latency.backends import BACKENDS
from .latency.fingerprint import FingerprintError
from .report import format_front, format_space, format_tables
from .pruning.importance import PRUNING_CRITERIA, RENAMED, SALIENCIES
from .study.evaluators import EVALUATORS
from .study.settings import SearchSettings

SETTINGS = SearchSettings()  # the search's defaults, shown and used by the options that set them

TABLE_HELP = ("latency table: a file (from `autoprune profile` or a device's kit), or 'shipped' for the reference "
              "table shipped with autoprune; default: this machine's own, profiled on first use (about a minute on "
              "2 cores, once; then cached, see `autoprune tables`)")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=defaults.DEFAULT_MODEL,
                   help=f"model spec (default: {defaults.DEFAULT_MODEL} with its shipped weights)")
    p.add_argument("--weights", default=None, help="checkpoint file (state dict), or 'shipped'")
    p.add_argument("--input-shape", default=None, help="override the input size, e.g. 3x224x224")


def _add_space_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", default=None, help="a search-space YAML (from `inspect --save`) instead of the default")
    p.add_argument("--steps", type=int, default=8, help="kept counts are k/STEPS of a group's width (default 8)")
    p.add_argument("--multiple-of", type=int, default=None,
                   help="kept counts are multiples of N instead (the default with --dtype int8: 8, the widths ORT's int8 "
                        "convolutions run fastest at)")
    p.add_argument("--min-keep", type=float, default=0.125, help="never keep less than this share (default 0.125)")
    p.add_argument("--freeze", action="append", default=[], metavar="GROUP", help="never prune this group (glob)")
    p.add_argument("--depth", action="store_true",
                   help="also remove whole residual blocks whose shortcut is the identity (their branch goes)")


def _add_target_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default=None,
                   help=f"this machine's own table is measured on it: {defaults.BACKEND} (default), "
                        f"{', '.join(b for b in BACKENDS if b != defaults.BACKEND)}; a named --table measured on "
                        "another is refused")
    p.add_argument("--threads", type=int, default=None,
                   help=f"intra-op threads of this machine's own table (default {defaults.THREADS})")
    p.add_argument("--dtype", default=None,
                   help=f"the precision latencies are predicted in: {defaults.DTYPE} (default, or a named --table's "
                        "own) or int8 (ort-cpu: statically quantised, QDQ); this machine's own table is measured in "
                        "it, a named --table must hold it. search without --dtype or --table searches every "
                        "precision the backend times (ort-cpu: float32 and int8) on one front")


def _add_table_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--table", required=required, default=None, help=TABLE_HELP)
    p.add_argument("--force", action="store_true", help="use a table measured with other settings anyway")


def _space(args) -> dict:
    return {"space": args.space, "steps": args.steps, "multiple_of": args.multiple_of, "min_keep": args.min_keep,
            "freeze": tuple(args.freeze), "depth": args.depth}


def _target(args) -> dict:
    return {"backend": args.backend, "threads": args.threads, "force": args.force, "dtype": args.dtype}


def cmd_inspect(args) -> int:
    space = api.inspect(args.model, weights=args.weights, input_shape=args.input_shape, **_space(args))
    print(format_space(space))
    if args.verify:
        failures = api.verify(args.model, weights=args.weights, input_shape=args.input_shape, **_space(args))
        if failures:
            for line in failures:
                print(f"autoprune: pruning check failed: {line}", file=sys.stderr)
            return 1
        print("pruning check: every checkable group removes exactly the chosen channels")
    if args.save:
        space.save(args.save)
        print(f"saved search space to {args.save}")
    return 0


def _search_settings(args) -> dict:
    return {
        "weights": args.weights, "input_shape": args.input_shape, "margin": args.margin, "data": args.data,
        "table": args.table, "backend": args.backend, "threads": args.threads, "force_table": args.force,
        "dtype": args.dtype,
        "saliency": args.saliency, "seed": args.seed, "steps": args.steps, "multiple_of": args.multiple_of,
        "min_keep": args.min_keep, "freeze": args.freeze, "depth": args.depth, "space_file": args.space,
    }


def cmd_search(args) -> int:
    out = args.out or defaults.default_out(args.model)
    result = api.search(
        args.model, args.budget, out=out, storage=args.storage, study=args.study, workers=args.workers,
        evaluator=args.evaluator, supernet_epochs=args.supernet_epochs, supernet_samples=args.supernet_samples,
        proxy=args.proxy, distill=args.distill, criterion=args.criterion, sampler=args.sampler, trials=args.trials,
        measure=not args.no_measure, **_search_settings(args),
    )
    print(format_front(result))
    print(f"front, plots and pruned models in {out}/ (pareto.json, pareto.csv, pareto.png, pareto.html, front/)")
    return 0


def cmd_knapsack(args) -> int:
    found = api.knapsack(args.model, args.budget, **_search_settings(args))
    print(json.dumps(found.config))
    print(f"predicted {found.predicted_ms:.3f} ms (target {found.target_ms:.3f} ms, budget {found.budget_ms:.3f} ms, "
          f"unpruned {found.unpruned_ms:.3f} ms), {found.saliency} saliency", file=sys.stderr)
    if args.save:
        Path(args.save).write_text(json.dumps(found.config, indent=1) + "\n")
    return 0


def cmd_pareto(args) -> int:
    print(format_front(api.pareto(args.out)))
    return 0


def cmd_export(args) -> int:
    if args.out is None:
        raise AutopruneError("--out is required: the run directory of the search to export from")
    if args.measured:
        report = api.complete_export(args.out, args.measured)
    else:
        report = api.export(args.out, trial=args.trial, budget=args.budget, finetune_epochs=args.finetune_epochs,
                            lr=args.lr, distill=args.distill, storage=args.storage, study=args.study, seed=args.seed,
                            schedule=args.schedule, int8=args.int8)
        print(f"trial {report.trial}: test accuracy {100 * report.test_accuracy:.2f}% "
              f"(unpruned {100 * report.unpruned_test_accuracy:.2f}%); wrote {report.files['model']}, "
              f"{report.files['onnx']}{', ' + report.files['int8'] if 'int8' in report.files else ''} and report.json")
        for name, figures in report.precisions.items():
            timed = f", {figures['measured_ms']:.3f} ms measured here" if "measured_ms" in figures else ""
            print(f"  {name}: test accuracy {100 * figures['test_accuracy']:.2f}%{timed}")
    if report.pending:
        print(f"latency: predicted {report.predicted_ms:.3f} ms, budget {report.budget_ms:.3f} ms; the table is "
              f"another device's, so the measurement is pending {report.pending}; then "
              f"`autoprune export --out {args.out} --measured result.json`")
        return 0
    print(f"latency measured {report.measured_ms:.3f} ms on {report.measured_on.get('cpu')} vs predicted "
          f"{report.predicted_ms:.3f} ms ({100 * report.prediction_error:+.1f}%), budget {report.budget_ms:.3f} ms")
    return 0


def cmd_profile(args) -> int:
    result = api.profile(
        args.model, args.out, kit=args.kit, input_shape=args.input_shape, backend=args.backend,
        threads=args.threads, batch=args.batch, dtype=args.dtype, calibration=args.calibration,
        validate=args.validate, seed=args.seed, repeats=args.repeats, warmup=args.warmup, **_space(args),
    )
    if args.kit:
        print(f"wrote kit {result}: unzip it on the device and run `python3 runner.py . --out table.json`")
        return 0
    if args.validate:  # measured by the runner right after calibration, in the same fresh process
        figures = next(m["validation"] for key, m in result.models.items() if key.startswith(f"{args.model}@"))
        print(_figures_line(args.model, args.backend, figures))
    print(f"wrote {args.out}")
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
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = api.explain(args.model, args.table, _read_config(args.config), input_shape=args.input_shape,
                            strict=args.strict, **_space(args), **_target(args))
    _print_warnings(caught)
    print(f"{args.model}: predicted {found.ms:.3f} ms per forward pass ({found.table.describe()})")
    shown = sorted(found.parts.items(), key=lambda kv: -abs(kv[1]))[: args.top or None]
    width = max(len(name) for name, _ in shown)
    for name, part in shown:
        print(f"  {name:<{width}}  {part:9.4f} ms  {part / found.ms * 100:5.1f}%")
    return 0


def _print_warnings(caught) -> None:
    for message in dict.fromkeys(str(w.message) for w in caught):
        print(f"autoprune: warning: {message}", file=sys.stderr)


def cmd_validate(args) -> int:
    figures = api.validate(args.model, args.table, samples=args.samples, seed=args.seed, input_shape=args.input_shape,
                           save=not args.no_save, plot=args.plot, **_space(args), **_target(args))
    print(_figures_line(args.model, f"{figures['backend']} in {figures['dtype']}", figures))
    if not args.no_save:
        print(f"stored the figures in {figures['table']}")
    if args.plot:
        print(f"wrote {args.plot}")
    return 0


def cmd_rescale(args) -> int:
    table, figures = api.rescale(args.model, args.table, args.out, configs=args.configs, seed=args.seed,
                                 input_shape=args.input_shape, force=args.force, terms=not args.one_factor,
                                 **_space(args))
    before, after = figures["before"], figures["after"]
    factors = ", ".join(f"{term} x{f:.3f}" for term, f in figures["factors"].items())
    print(f"{args.model}: {factors}; on {after['n']} configs timed here MAPE "
          f"{before['mape_pct']:.1f}% -> {after['mape_pct']:.1f}%, worst {before['worst_pct']:+.1f}% -> "
          f"{after['worst_pct']:+.1f}%")
    print(f"wrote {table.path}")
    return 0


def cmd_tables(args) -> int:
    found = api.tables(clear=args.clear)
    if args.clear:
        print("cleared the cache of this machine's latency tables")
    print(format_tables(found))
    return 0


COMMANDS = {
    "inspect": ("print a model's prunable channel groups and save its search space", cmd_inspect),
    "profile": ("measure a latency table on this machine, or write a kit for another device", cmd_profile),
    "predict": ("predicted latency of a model or a config, per layer", cmd_predict),
    "validate": ("measure random configs end to end and report the predictor's error", cmd_validate),
    "rescale": ("adapt a table from another machine to this one: a few models timed here refit its compute and "
                "overhead terms", cmd_rescale),
    "knapsack": ("one-shot allocation: the latency-saliency knapsack's config at a budget, no accuracy spent",
                 cmd_knapsack),
    "search": ("search the Pareto front of accuracy vs latency under a budget", cmd_search),
    "pareto": ("print the front of a finished search", cmd_pareto),
    "export": ("fine-tune, save and check a chosen pruned model", cmd_export),
    "tables": ("list this machine's cached latency tables (made on first use), or clear them", cmd_tables),
}


class OneLineParser(argparse.ArgumentParser):
    """argparse's own errors (a missing value, an unknown option) as one line, like every other bad input: its usage
    block would bury the reason under a dozen lines. Subcommands' parsers are of this class too (add_subparsers)."""

    def error(self, message: str):
        if "expected one argument" in message:  # argparse reads a value that starts with '-' as an option
            option = message.partition(":")[0].removeprefix("argument ").split("/")[-1]
            message += f"; a value that starts with '-' goes after '=' ({option}=VALUE)"
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _renamed(role: str):
    """Reads a criterion's name of an earlier release (`--saliency taylor`) as the registry now spells it."""
    return lambda name: RENAMED[role].get(name, name)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="autoprune", description="Hardware-aware automated channel pruning for PyTorch CNNs.",
        epilog="Latency is this machine's unless --table names another: on a machine autoprune has not seen, the "
               "first command that predicts profiles a table for it (about a minute on 2 cores for the default "
               "model, with a progress bar) and caches it per user (`autoprune tables`); later runs reuse it.",
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
    p.add_argument("--backend", default=defaults.BACKEND,
                   help=f"{', '.join(BACKENDS)} (default {defaults.BACKEND})")
    p.add_argument("--threads", type=int, default=defaults.THREADS, help=f"intra-op threads (default {defaults.THREADS})")
    p.add_argument("--batch", type=int, default=defaults.BATCH, help=f"batch size (default {defaults.BATCH})")
    p.add_argument("--dtype", default=defaults.DTYPE,
                   help=f"{defaults.DTYPE} (default); int8 on ort-cpu (statically quantised QDQ models, as ORT runs "
                        "them); float16 on torch-cuda")
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
    p.add_argument("--table", required=True, help="the table from another machine to adapt (a file, or 'shipped')")
    p.add_argument("--force", action="store_true", help="use a table measured with other settings anyway")
    p.add_argument("--out", required=True, help="the table for this machine to write")
    p.add_argument("--configs", type=int, default=8,
                   help="models timed here: the unpruned one and N-1 pruned (8); from 4 on, the calibration's "
                        "compute and overhead terms are refitted separately, below that one factor")
    p.add_argument("--seed", type=int, default=0, help="seed of the pruned configs")
    p.add_argument("--one-factor", action="store_true", help="scale every term by one factor instead")

    p = parsers["predict"]
    _add_model_args(p)
    _add_space_args(p)
    _add_table_args(p)
    _add_target_args(p)
    p.add_argument("--config", default=None, help="JSON {group: kept channels}; default: the unpruned model")
    p.add_argument("--strict", action="store_true", help="refuse kernels missing from the table (no interpolation)")
    p.add_argument("--top", type=int, default=15, help="show the N largest parts of the breakdown (0: all)")

    p = parsers["validate"]
    _add_model_args(p)
    _add_space_args(p)
    _add_table_args(p)
    _add_target_args(p)
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
        _add_table_args(p)
        _add_target_args(p)
        p.add_argument("--saliency", default=SETTINGS.saliency, choices=SALIENCIES, type=_renamed("saliency"),
                       help=f"what a channel is worth to the knapsack (default {SETTINGS.saliency}: HALP's batch-norm "
                            "Taylor importance over proxy-train batches; l1: weight magnitude, no data)")
        p.add_argument("--seed", type=int, default=0)
    p = parsers["knapsack"]
    p.add_argument("--save", default=None, help="also write the config as JSON (for predict --config)")
    p = parsers["search"]
    p.add_argument("--evaluator", default=SETTINGS.evaluator, choices=EVALUATORS,
                   help=f"what scores a candidate (default {SETTINGS.evaluator}): supernet, the model fine-tuned once "
                        "so every width runs (trained on first use, cached for every budget); ladder, the model "
                        "pruned one-shot and scored by --proxy")
    p.add_argument("--supernet-epochs", type=float, default=SETTINGS.supernet_epochs,
                   help=f"the supernet's fine-tune, in passes over the training split (default {SETTINGS.supernet_epochs:g})")
    p.add_argument("--supernet-samples", type=int, default=SETTINGS.supernet_samples,
                   help=f"configs the supernet trains a step besides the widest and narrowest (default "
                        f"{SETTINGS.supernet_samples})")
    p.add_argument("--proxy", default=SETTINGS.proxy,
                   help=f"the ladder's score of a candidate: fidelities (default {SETTINGS.proxy}), adaptive-bn[:N] or "
                        "finetune:STEPS")
    p.add_argument("--distill", action="store_true", help="fine-tuning proxies distil from the unpruned model")
    p.add_argument("--criterion", default=SETTINGS.criterion, choices=PRUNING_CRITERIA, type=_renamed("pruning"),
                   help=f"which channels go for the ladder (default {SETTINGS.criterion}: those the knapsack's saliency "
                        "values least; weight-taylor is torch-pruning's TaylorImportance); the supernet keeps its order")
    p.add_argument("--sampler", default=SETTINGS.sampler, choices=["tpe", "nsga2"])
    p.add_argument("--trials", type=int, default=SETTINGS.trials,
                   help=f"candidates to look at, scored in full or stopped early (default {SETTINGS.trials})")
    p.add_argument("--no-measure", action="store_true",
                   help="time nothing here: trials fitted to the table's predictions alone, the front not timed (a machine "
                        "busy with other work)")
    _add_run_args(p)
    p.add_argument("--workers", type=int, default=1, help="processes on this machine sharing the study")

    p = parsers["pareto"]
    p.add_argument("--out", required=True, help="the run directory of a search")

    p = parsers["export"]
    _add_run_args(p)
    p.add_argument("--trial", type=int, default=None, help="the trial to export")
    p.add_argument("--budget", default=None, help="export the most accurate front member within this budget")
    p.add_argument("--finetune-epochs", type=float, default=1.0,
                   help="epochs of fine-tuning before the export (default 1; 0 writes the model as the search scored it)")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--distill", action="store_true", help="distil from the unpruned model while fine-tuning")
    p.add_argument("--schedule", default="one-shot", metavar="{one-shot,progressive[:EVENTS]}",
                   help="one-shot (default): prune the trial's config, then fine-tune; progressive: HALP's schedule, "
                        "narrowing toward the trial's widths in EVENTS steps (30) during the first third of the "
                        "fine-tune, the channels that go chosen by importance at each step; the same epochs either way")
    p.add_argument("--int8", action="store_true",
                   help="also write model.int8.onnx (ONNX Runtime static QDQ, calibrated on training images) and "
                        "report its test accuracy and latency; implied when the study's table is an int8 one")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--measured", default=None, metavar="RESULT",
                   help="complete a pending export with the result.json its timing kit wrote on the device")

    p = parsers["tables"]
    p.add_argument("--clear", action="store_true", help="remove every cached table (the next use profiles again)")
    return parser


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None, help="run directory (default runs/<model>)")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default: sqlite in the run directory)")
    p.add_argument("--study", default=defaults.STUDY_NAME, help="study name inside the storage")


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
    except (AutopruneError, FingerprintError) as exc:
        print(f"autoprune {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"autoprune {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
