"""Plain-text tables of what autoprune found."""
from __future__ import annotations

from .space import SearchSpace


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
        [g.name, str(g.channels), _choices(g.choices), f"{100 * g.macs_share:.1f}%", g.why_frozen or ""]
        for g in space.groups
    ]
    head = f"{space.model}  input {'x'.join(map(str, space.input_shape))}"
    body = table(["group", "channels", "allowed kept", "MACs touched", "frozen"], rows)
    searchable = len(space.searchable)
    foot = (
        f"{len(space.groups)} groups ({searchable} searchable)  MACs {_si(space.macs)}  params {_si(space.params)}"
        "\nMACs touched: share of the model's MACs in layers whose width the group sets."
    )
    return f"{head}\n{body}\n{foot}"
