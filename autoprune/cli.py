"""The `autoprune` command: parses arguments and calls the API; user mistakes become one line on stderr."""
from __future__ import annotations

import argparse
import sys

from .errors import AutopruneError

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
    from .models import load_model

    weights = args.weights
    if args.model is None:
        args.model = DEFAULT_MODEL
        weights = weights or "shipped"
    return load_model(args.model, weights, args.input_shape)


def space_from_args(args, loaded):
    from .space import Granularity, SearchSpace, build_space

    if getattr(args, "space", None):
        space = SearchSpace.load(args.space)
        if space.model != loaded.spec:
            raise AutopruneError(f"search space {args.space} is for {space.model}, not {loaded.spec}")
        return space
    if args.steps < 1 or (args.multiple_of is not None and args.multiple_of < 1) or not 0 < args.min_keep <= 1:
        raise AutopruneError("--steps and --multiple-of must be positive and --min-keep in (0, 1]")
    return build_space(loaded, Granularity(args.steps, args.multiple_of, args.min_keep), args.freeze)


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


def _not_yet(name: str, what: str):
    def run(args) -> int:
        raise AutopruneError(f"`autoprune {name}` is not available yet: it arrives with {what}")

    return run


COMMANDS = {
    "inspect": ("print a model's prunable channel groups and save its search space", cmd_inspect),
    "profile": ("measure a latency table on this machine, or write a kit for another device",
                _not_yet("profile", "the latency tables")),
    "predict": ("predicted latency of a model or a config, per layer", _not_yet("predict", "the latency tables")),
    "validate": ("measure random configs end to end and report the predictor's error",
                 _not_yet("validate", "the latency tables")),
    "search": ("search the Pareto front of accuracy vs latency under a budget", _not_yet("search", "the search")),
    "pareto": ("print and plot the front of a study", _not_yet("pareto", "the search")),
    "export": ("fine-tune, save and check a chosen pruned model", _not_yet("export", "the search")),
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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command][1](args)
    except AutopruneError as exc:
        print(f"autoprune {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"autoprune {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
