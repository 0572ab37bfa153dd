"""A Pareto front on the terminal: AP with as many digits as tell its points apart, and the genome column cut to
the genes in which the points differ, so the table stays about 120 columns wide (the full genomes are in the
report's CSV and Markdown tables)."""

from __future__ import annotations

from collections.abc import Sequence

from analysis.tables import LATENCY_COLUMNS, to_terminal

WIDTH = 120  # the terminal table's target width
# The front on the terminal: the raw FLOPs and AP50 are in the report's tables (and --json), not here.
TERMINAL_COLUMNS = ["trial_id", "preset", "ap", "ar", "flops_M", "params_M", "genome"]
GENOME_NOTES = {
    True: "genome: only the genes that differ from the space's base genome; the full genomes are in pareto.csv",
    False: "genome: only the genes in which the front's points differ; the full genomes are in pareto.csv",
}


def ap_digits(values: Sequence[float], least: int = 3, most: int = 6) -> int:
    """The fewest decimals (at least `least`) that keep distinct AP values distinct."""
    distinct = len(set(values))
    for digits in range(least, most):
        if len({round(v, digits) for v in values}) == distinct:
            return digits
    return most


def differing_genes(genomes: Sequence[str], base: str | None = None) -> list[str]:
    """Each compact genome without the `gene=value` tokens of `base` (default: the tokens all of them share, when
    there are two or more)."""
    token_sets = [set(g.split()) for g in genomes]
    common = set.intersection(*token_sets) if len(token_sets) > 1 else set()
    shared = set(base.split()) if base is not None else common
    return [" ".join(t for t in g.split() if t not in shared) or "(base)" for g in genomes]


def columns_of(rows: list[dict]) -> list[str]:
    """The terminal columns; a confirmed front (--confirm) shows its standalone AP beside the inherited one, a
    search with latency its predicted and measured latency."""
    columns = list(TERMINAL_COLUMNS)
    if any("confirmed_ap" in r for r in rows):
        columns.insert(3, "confirmed_ap")
    latency = [k for k in LATENCY_COLUMNS if any(k in r for r in rows)]
    return [*columns[:-1], *latency, columns[-1]]


def terminal_rows(rows: list[dict], base: str | None = None) -> list[dict]:
    aps = [r[key] for r in rows for key in ("ap", "confirmed_ap") if isinstance(r.get(key), float)]
    digits = ap_digits(aps)

    def shown(value):
        return f"{value:.{digits}f}" if isinstance(value, float) else value

    genomes = differing_genes([r.get("genome") or "" for r in rows], base)
    return [
        {**r, **{key: shown(r[key]) for key in ("ap", "confirmed_ap") if key in r}, "genome": genome}
        for r, genome in zip(rows, genomes, strict=True)
    ]


def fit_genomes(rows: list[dict]) -> list[dict]:
    """Cut the genome column (with `…`) so that the table is at most WIDTH columns wide."""
    others = [c for c in columns_of(rows) if c != "genome"]
    without = to_terminal(others, rows).splitlines()
    room = max(20, WIDTH - max(len(line) for line in without) - 2)
    return [{**r, "genome": r["genome"] if len(r["genome"]) <= room else r["genome"][: room - 1] + "…"} for r in rows]


def print_front(rows: list[dict], base: str | None = None) -> None:
    """The front's table (rows of analysis.runs.pareto_rows); `base`: the space's compact base genome, if known."""
    print(to_terminal(columns_of(rows), fit_genomes(terminal_rows(rows, base))), end="")
    if rows and (base is not None or len(rows) > 1):
        print(GENOME_NOTES[base is not None])
