"""`hrnas fidelity`'s report: every signal's fidelity against a truth file, as a table, JSON and a plot.

Checks its inputs first (one line each): the files exist and parse, the truth holds one recipe and at least
`MIN_GENOMES` genomes, every asked signal is known and present.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from fidelity.metrics import (
    MIN_GENOMES,
    Fidelity,
    SeedCeiling,
    costs_of,
    fidelity,
    flops_edges,
    one_off_costs_of,
    scores_of,
    seed_ceiling,
    truth_of,
)
from fidelity.signals import signal_spec
from fidelity.truth import TruthError, read_lines

# Signals counted from the truth file itself when the signals file has no lines of them (exact, no training).
COUNTED = ("flops", "params")


def default_signals_file(truth: Path) -> Path:
    return truth.with_name("signals.jsonl")


@dataclass(frozen=True)
class Report:
    truth_file: Path
    rows: list[Fidelity]
    ceiling: SeedCeiling
    genomes: int
    recipe: str
    presets: dict[str, float]  # preset name -> its truth AP

    def to_json(self) -> list[dict]:
        return [row.to_dict() for row in self.rows] + [self.ceiling.to_dict()]


def check_truth(lines: list[dict], path: Path) -> str:
    """The truth file's one recipe name; an error if it mixes recipes or holds too few genomes."""
    recipes = {line["recipe"]["name"]: line["recipe"] for line in lines if line["kind"] == "truth"}
    if len({repr(sorted(r.items())) for r in recipes.values()}) > 1:
        raise TruthError(f"{path} mixes truth recipes ({', '.join(sorted(recipes))}): a truth holds one recipe; "
                         "split the file by recipe")  # fmt: skip
    genomes = len(truth_of(lines))
    if genomes < MIN_GENOMES:
        raise TruthError(f"{path} holds {genomes} genomes with a finished truth training; fidelity needs at least "
                         f"{MIN_GENOMES}: let `hrnas bench truth` train more")  # fmt: skip
    return next(iter(recipes))


def counted_lines(lines: list[dict]) -> list[dict]:
    """`flops` and `params` signal lines from the truth file (one per genome, no cost)."""
    rows, seen = [], set()
    for line in lines:
        if line["kind"] == "truth" and line["genome"] not in seen:
            seen.add(line["genome"])
            rows += [{"signal": s, "genome": line["genome"], "seed": 0, "score": line[s], "cpu_seconds": 0.0}
                     for s in COUNTED]  # fmt: skip
    return rows


def build(truth_file: Path, signals_file: Path | None, wanted: list[str] | None) -> Report:
    for name in wanted or []:
        signal_spec(name)  # an unknown name: ValueError naming the registry's signals
    lines = read_lines(truth_file)
    recipe = check_truth(lines, truth_file)
    signals_file = signals_file or default_signals_file(truth_file)
    if signals_file.is_file():
        signal_lines = read_lines(signals_file)
    elif wanted and set(wanted) - set(COUNTED):
        raise TruthError(f"{signals_file} does not exist: compute the signals with `hrnas bench signals --truth "
                         f"{truth_file}` or give --signals FILE")  # fmt: skip
    else:
        signal_lines = []
    have = {line["signal"] for line in signal_lines}
    signal_lines += [line for line in counted_lines(lines) if line["signal"] not in have]
    scores, costs, one_off = scores_of(signal_lines), costs_of(signal_lines), one_off_costs_of(signal_lines)
    for name in wanted or []:
        if name not in scores:
            raise TruthError(f"{signals_file} has no lines of signal {name!r}: compute it with `hrnas bench signals "
                             f"--truth {truth_file} --signal {name}`")  # fmt: skip
    truth = truth_of(lines)
    edges = flops_edges([row.flops for row in truth.values()])
    names = wanted or sorted(scores, key=lambda s: (costs[s], s))
    rows = [fidelity(name, truth, scores[name], costs[name], edges, one_off.get(name, 0.0)) for name in names]
    presets = {row.preset: row.ap for row in truth.values() if row.preset}
    return Report(truth_file, rows, seed_ceiling(truth, edges), len(truth), recipe, presets)


def _ci(values: list[float]) -> str:
    return "[" + ", ".join("  nan" if math.isnan(v) else f"{v:+.2f}" for v in values) + "]"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f}" if seconds else "-"


def table(report: Report) -> str:
    head = (f"{'signal':<18} {'n':>3}  {'Kendall tau':<22} {'Spearman':>8}  {'within-FLOPs tau':<22} "
            f"{'top-10%':>7} {'regret':>7} {'CPU s/genome':>12} {'once, CPU-h':>11}")  # fmt: skip
    out = [f"fidelity against {report.truth_file} ({report.genomes} genomes, recipe {report.recipe})", head,
           "-" * len(head)]  # fmt: skip
    for r in report.rows:
        out.append(
            f"{r.signal:<18} {r.n:>3}  {r.kendall_tau:+.2f} {_ci(r.kendall_tau_ci):<16} {r.spearman:>+8.2f}  "
            f"{r.within_flops_tau:+.2f} {_ci(r.within_flops_tau_ci):<16} {r.top10_overlap:>7.2f} {r.regret:>7.3f} "
            f"{r.cpu_seconds_per_genome:>12.1f} {_hours(r.one_off_cpu_seconds):>11}"
        )
    c = report.ceiling
    out.append(f"seed ceiling (seed 0 vs seed 1): Kendall tau {c.kendall_tau:+.2f} {_ci(c.kendall_tau_ci)}, within "
               f"FLOPs bins {c.within_flops_tau:+.2f} {_ci(c.within_flops_tau_ci)}, over {c.n} genomes")  # fmt: skip
    return "\n".join(out)


def plot(report: Report, path: Path) -> Path:
    """Fidelity against cost: one point per signal (Kendall tau with its interval, CPU-seconds per genome on a log
    axis), the seed ceiling and FLOPs' tau as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    drawn = [r for r in report.rows if not math.isnan(r.kendall_tau)]  # an undefined tau (a constant score) is not
    for r in drawn:
        x = max(r.cpu_seconds_per_genome, 1e-3)
        low, high = (r.kendall_tau if math.isnan(v) else v for v in r.kendall_tau_ci)
        ax.errorbar([x], [r.kendall_tau], yerr=[[r.kendall_tau - low], [high - r.kendall_tau]], fmt="o", capsize=3)
        ax.annotate(r.signal, (x, r.kendall_tau), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ceiling = report.ceiling.kendall_tau
    if not math.isnan(ceiling):
        ax.axhline(ceiling, color="gray", linestyle="--", linewidth=1, label=f"seed ceiling {ceiling:+.2f}")
    flops = next((r for r in report.rows if r.signal == "flops"), None)
    if flops is not None and not math.isnan(flops.kendall_tau):
        ax.axhline(
            flops.kendall_tau, color="tab:red", linestyle=":", linewidth=1, label=f"FLOPs {flops.kendall_tau:+.2f}"
        )
    ax.set_xscale("log")
    ax.set_xlim(5e-4, 10 * max([1.0, *(r.cpu_seconds_per_genome for r in drawn)]))
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel("CPU-seconds per genome (log)")
    ax.set_ylabel("Kendall tau against the truth (95 % CI)")
    ax.set_title(f"signal fidelity: {report.genomes} genomes, {report.recipe}", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
