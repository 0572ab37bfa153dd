"""How well a signal ranks a truth's genomes, with the definitions the docs state and every report uses.

- a genome's truth: its final-epoch AP (kind `truth`) averaged over its seeds;
- a signal's score of a genome: its score averaged over the seeds it was computed with (higher: predicts a better AP;
  counted costs such as FLOPs enter as they are, "bigger is better");
- Kendall tau (tau-b) and Spearman rho over the genomes both hold, with 95 % intervals from 1,000 bootstrap
  resamples of genomes (fixed seed);
- top-10 % overlap: the share of the truth's best ceil(10 % of n) genomes among the signal's best as many;
- regret: the truth AP of the truth's best genome minus the truth AP of the signal's top choice;
- FLOPs bins: the quintiles of the truth genomes' FLOPs; within-bin tau: the mean of the per-bin Kendall taus,
  weighted by each bin's pairs (where counting cannot help);
- the seed ceiling: Kendall tau between seed 0's and seed 1's final-epoch AP over the genomes that have both, overall
  and within the FLOPs bins (the most a signal's tau, or its within-bin tau, can be expected to reach).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

BOOTSTRAP = 1000
BOOTSTRAP_SEED = 0
FLOPS_BINS = 5
TOP_SHARE = 0.10
MIN_GENOMES = 5


@dataclass(frozen=True)
class TruthGenome:
    genome: str
    ap: float  # mean over seeds of the final-epoch AP
    seeds: dict[int, float]
    flops: int
    preset: str | None


def truth_of(lines: Iterable[dict]) -> dict[str, TruthGenome]:
    """The truth of every genome with a finished `truth` training."""
    seeds: dict[str, dict[int, float]] = defaultdict(dict)
    first: dict[str, dict] = {}
    for line in lines:
        if line["kind"] == "truth" and int(line["epoch"]) == int(line["epochs"]):
            seeds[line["genome"]][int(line["seed"])] = float(line["ap"])
            first.setdefault(line["genome"], line)
    return {
        g: TruthGenome(g, float(np.mean(list(s.values()))), dict(s), int(first[g]["flops"]), first[g].get("preset"))
        for g, s in seeds.items()
    }


def scores_of(lines: Iterable[dict]) -> dict[str, dict[str, float]]:
    """signal -> genome -> score averaged over seeds."""
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for line in lines:
        values[line["signal"]][line["genome"]].append(float(line["score"]))
    return {s: {g: float(np.mean(v)) for g, v in by.items()} for s, by in values.items()}


def costs_of(lines: Iterable[dict]) -> dict[str, float]:
    """signal -> mean CPU-seconds per genome (summed over a genome's seeds)."""
    per: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for line in lines:
        per[line["signal"]][line["genome"]] += float(line.get("cpu_seconds", 0.0))
    return {s: float(np.mean(list(by.values()))) for s, by in per.items()}


def one_off_costs_of(lines: Iterable[dict]) -> dict[str, float]:
    """signal -> CPU-seconds paid once for all its genomes (a one-shot variant's supernet training; 0 for others)."""
    costs: dict[str, float] = defaultdict(float)
    for line in lines:
        costs[line["signal"]] = max(costs[line["signal"]], float(line.get("one_off_cpu_seconds", 0.0)))
    return dict(costs)


def kendall(a: list[float], b: list[float]) -> float:
    """Kendall's tau-b; nan where it is undefined (fewer than two genomes, or a constant ranking)."""
    if len(a) < 2 or len(set(a)) < 2 or len(set(b)) < 2:
        return math.nan
    return float(stats.kendalltau(a, b).statistic)


def spearman(a: list[float], b: list[float]) -> float:
    if len(a) < 2 or len(set(a)) < 2 or len(set(b)) < 2:
        return math.nan
    return float(stats.spearmanr(a, b).statistic)


def flops_edges(flops: list[int], bins: int = FLOPS_BINS) -> list[float]:
    """The inner quantile edges of the truth genomes' FLOPs (bins-1 values)."""
    return [float(q) for q in np.quantile(flops, [i / bins for i in range(1, bins)])]


def within_bins(truth: list[float], score: list[float], flops: list[int], edges: list[float]) -> float:
    """Pair-weighted mean of the Kendall taus inside each FLOPs bin (bins with fewer than two genomes, or a constant
    ranking, add nothing)."""
    groups: dict[int, list[int]] = defaultdict(list)
    for i, f in enumerate(flops):
        groups[int(np.searchsorted(edges, f, side="left"))].append(i)
    total = weight = 0.0
    for members in groups.values():
        tau = kendall([truth[i] for i in members], [score[i] for i in members])
        if len(members) >= 2 and not math.isnan(tau):
            pairs = len(members) * (len(members) - 1) / 2
            total, weight = total + tau * pairs, weight + pairs
    return total / weight if weight else math.nan


def top_overlap(truth: list[float], score: list[float], share: float = TOP_SHARE) -> float:
    k = max(1, math.ceil(share * len(truth)))
    best = set(np.argsort(truth)[::-1][:k])
    picked = set(np.argsort(score, kind="stable")[::-1][:k])
    return len(best & picked) / k


def regret(truth: list[float], score: list[float]) -> float:
    return float(max(truth) - truth[int(np.argmax(score))])


def interval(values: list[float]) -> list[float]:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return [math.nan, math.nan]
    return [float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5))]


@dataclass(frozen=True)
class Fidelity:
    signal: str
    n: int
    kendall_tau: float
    kendall_tau_ci: list[float]
    spearman: float
    spearman_ci: list[float]
    top10_overlap: float
    regret: float
    within_flops_tau: float
    within_flops_tau_ci: list[float]
    cpu_seconds_per_genome: float
    one_off_cpu_seconds: float = 0.0  # paid once for all genomes (a supernet's training); its share is in the above

    def to_dict(self) -> dict:
        return finite(asdict(self))


def finite(value):
    """NaN (an undefined tau) as None, so that JSON stays JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, list):
        return [finite(v) for v in value]
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    return value


def fidelity(
    signal: str,
    truth: Mapping[str, TruthGenome],
    scores: Mapping[str, float],
    cost: float,
    edges: list[float],
    one_off: float = 0.0,
) -> Fidelity:
    """One signal against the truth over the genomes both hold (see the module's docstring)."""
    genomes = sorted(g for g in scores if g in truth)
    t = [truth[g].ap for g in genomes]
    s = [scores[g] for g in genomes]
    f = [truth[g].flops for g in genomes]
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    taus, rhos, withins = [], [], []
    for _ in range(BOOTSTRAP):
        pick = rng.integers(0, len(genomes), len(genomes))
        tb, sb, fb = [t[i] for i in pick], [s[i] for i in pick], [f[i] for i in pick]
        taus.append(kendall(tb, sb))
        rhos.append(spearman(tb, sb))
        withins.append(within_bins(tb, sb, fb, edges))
    return Fidelity(
        signal=signal,
        n=len(genomes),
        kendall_tau=kendall(t, s),
        kendall_tau_ci=interval(taus),
        spearman=spearman(t, s),
        spearman_ci=interval(rhos),
        top10_overlap=top_overlap(t, s),
        regret=regret(t, s),
        within_flops_tau=within_bins(t, s, f, edges),
        within_flops_tau_ci=interval(withins),
        cpu_seconds_per_genome=cost,
        one_off_cpu_seconds=one_off,
    )


@dataclass(frozen=True)
class SeedCeiling:
    n: int
    kendall_tau: float
    kendall_tau_ci: list[float]
    within_flops_tau: float  # seed 0 against seed 1 inside the FLOPs bins: what a within-bin tau can reach
    within_flops_tau_ci: list[float]

    def to_dict(self) -> dict:
        return {"seed_ceiling": finite(asdict(self))}


def seed_ceiling(truth: Mapping[str, TruthGenome], edges: list[float]) -> SeedCeiling:
    """Kendall tau between seed 0's and seed 1's final-epoch AP over the genomes with both, overall and within the
    truth's FLOPs bins (`edges`), with bootstrap intervals."""
    both = sorted(g for g, row in truth.items() if 0 in row.seeds and 1 in row.seeds)
    a, b = [truth[g].seeds[0] for g in both], [truth[g].seeds[1] for g in both]
    f = [truth[g].flops for g in both]
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    taus, withins = [], []
    for _ in range(BOOTSTRAP):
        pick = rng.integers(0, len(both), len(both)) if both else []
        ab, bb = [a[i] for i in pick], [b[i] for i in pick]
        taus.append(kendall(ab, bb))
        withins.append(within_bins(ab, bb, [f[i] for i in pick], edges))
    return SeedCeiling(len(both), kendall(a, b), interval(taus), within_bins(a, b, f, edges), interval(withins))
