"""Plain-text tables of what autoprune found."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .budget import MEASURED_TOLERANCE
from .pruning.space import CHANNELS, SearchSpace

if TYPE_CHECKING:
    from .study.result import SearchResult


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def _choices(choices: list[int]) -> str:
    if len(choices) == 1:
        return str(choices[0])
    steps = {b - a for a, b in zip(choices, choices[1:])}
    if len(steps) == 1:
        return f"{choices[0]}..{choices[-1]} step {steps.pop()}"
    return ",".join(map(str, choices))


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(headers), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def format_space(space: SearchSpace) -> str:
    rows = [
        [g.name, str(g.channels) if g.kind == CHANNELS else "(block)",
         _choices(g.choices) if g.kind == CHANNELS else "kept or removed" if len(g.choices) > 1 else "kept",
         f"{100 * g.macs_share:.1f}%", g.why_frozen or ""]
        for g in space.groups
    ]
    head = f"{space.model}  input {'x'.join(map(str, space.input_shape))}"
    body = table(["group", "channels", "allowed kept", "MACs touched", "frozen"], rows)
    searchable = len(space.searchable)
    foot = (
        f"{len(space.groups)} groups ({searchable} searchable)  MACs {_si(space.macs)}  params {_si(space.params)}"
        "\nMACs touched: share of the model's MACs in layers whose width the group sets (a block's: in its branch)."
    )
    return f"{head}\n{body}\n{foot}"


def format_front(result: "SearchResult") -> str:
    shown = (lambda v: f"{100 * v:.2f}%") if result.extra.get("percent", True) else (lambda v: f"{v:.4g}")
    # A front over precisions says each one's table, band and timing; an older or one-precision front has its own.
    lanes = result.extra.get("lanes") or {"": {k: result.extra.get(k) for k in ("band", "table", "measured")}}
    mixed = len(lanes) > 1

    def likely(m) -> str:  # the likely measured range: its table's held-out errors (5th to 95th percentile)
        band = lanes.get(m.dtype, lanes.get("", {})).get("band")
        return f"{m.predicted_ms * band[0]:.3f}-{m.predicted_ms * band[1]:.3f}" if band else "not validated"

    def here(m) -> str:  # timed beside its precision's unpruned model, at the table's level; the share is of the
        # model the budget is a share of (float32's in a front over precisions), so it reads against a 0.5x budget
        if m.measured_share is None:
            return "-"
        over = "  OVER" if result.timed_over_budget(m) else ""
        return f"{result.latency(m):.3f} ({result.latency(m) / result.unpruned_ms:.2f}x){over}"

    rows = [[str(m.trial), m.origin + (f", {m.dtype}" if mixed else ""), f"{m.predicted_ms:.3f}", likely(m), here(m),
             shown(m.proxy_accuracy), f"{m.macs / 1e6:.1f}M", f"{m.params / 1e3:.0f}K"] for m in result.front]
    stopped = result.extra.get("stopped_early", 0)
    target = result.extra.get("target_ms", result.budget_ms)
    margin = f" (searched at {target:.3f} ms: margin {result.extra['margin']})" if target < result.budget_ms else ""
    unpruned = ", ".join(f"{name} {lane['unpruned_ms']:.3f} ms" for name, lane in lanes.items()) if mixed else (
        f"{result.unpruned_ms:.3f} ms")
    head = (f"{result.extra.get('model', '')}  budget {result.budget_ms:.3f} ms{margin}  unpruned "
            f"{unpruned}  {result.trials} trials scored in full ({result.feasible} within budget), "
            f"{stopped} stopped early\nscore: {result.extra.get('score', 'proxy accuracy')}")
    if result.extra.get("table"):
        head += f"\nlatency: {result.extra['table_device']} ({result.extra['table']}"
        head += "".join(f"; {n}: {lane['table']}" for n, lane in list(lanes.items())[1:]) + ")"
    for name, lane in lanes.items():
        measured = lane.get("measured") or {}
        members = [m for m in result.front if not mixed or m.dtype == name]
        which = f" ({name})" if mixed else ""
        if "measured_over_predicted" in measured:
            over = measured["over_budget"]
            head += (f"\ntimed here{which}: the front at {measured['measured_over_predicted']:.2f}x its predictions "
                     "(median); " + (f"{len(over)} of {len(members)} over the budget by more than "
                                     f"{MEASURED_TOLERANCE:.0%} (select, and export without --trial, skip them)"
                                     if over else "every member within the budget"))
        elif measured.get("skipped") and (members or not mixed):
            head += f"\nnot timed here{which}: {measured['skipped']}"
    return head + "\n" + table(["trial", "from", "predicted ms", "likely measured ms", "timed here ms (share)",
                                 "score", "MACs", "params"], rows)


def format_tables(found: list) -> str:
    """The cache of this machine's tables (latency.cache.CachedTable), one row per table and model."""
    from .latency.cache import cache_dir

    rows = []
    for t in found:
        if t.device is None:
            rows.append([t.path.name, "-", "-", "-", "unreadable: profiled again on next use"])
            continue
        d = t.device
        where = f"{d['cpu']}, {d['cores']} cores, {' '.join(d.get('isa') or [])}" + (" (here)" if t.this_machine else "")
        setup = f"{d['backend']} {d['backend_version']} t{d['threads']} b{d['batch']} {d['dtype']}"
        for key, mape in t.models.items():
            rows.append([key, setup, f"{t.age_days:.1f} d", "-" if mape is None else f"{mape:.2f}%", where])
    head = f"latency tables cached in {cache_dir()}: {len(found)}"
    if not rows:
        return head + " (the first command that predicts on this machine profiles one)"
    return head + "\n" + table(["model", "measured with", "age", "held-out MAPE", "machine"], rows)
