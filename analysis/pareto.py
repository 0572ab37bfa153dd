"""Pareto analysis of search results: AP (maximise) against FLOPs (minimise), and against any costs (FLOPs,
latency) as vectors of minimised objectives.

Pure Python and numpy (pymoo for hypervolumes of more than two objectives), usable on exported results without
torch, ray or mlflow installed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Point:
    """One trial/run reduced to its two objectives; `key` lets callers map a point back to its trial."""

    key: str
    ap: float
    flops: float

    def __post_init__(self) -> None:
        """Reject NaN here, because a NaN objective silently compares False and would corrupt every front."""
        for name in ("ap", "flops"):
            value = getattr(self, name)
            if value != value:  # NaN is the only value unequal to itself; works for numpy scalars too
                raise ValueError(f"point {self.key!r} has NaN {name}")


def _check(points: Sequence[Point]) -> None:
    """Re-check for NaN so duck-typed points (which skip Point.__post_init__) are still rejected by key."""
    for p in points:
        if p.ap != p.ap or p.flops != p.flops:
            raise ValueError(f"point {p.key!r} has NaN ap or flops")


def _front_order(p: Point) -> tuple[float, float, str]:
    """Sort key: flops ascending (as documented), then AP descending and key so the order is deterministic."""
    return (p.flops, -p.ap, p.key)


def dominates(a: Point, b: Point) -> bool:
    """True if `a` is at least as good as `b` in both objectives and strictly better in one, so `b` is never needed."""
    return a.ap >= b.ap and a.flops <= b.flops and (a.ap > b.ap or a.flops < b.flops)


def non_dominated_sort(points: Sequence[Point]) -> list[list[Point]]:
    """Fronts in order (front 0 is the Pareto front), each sorted by flops, to rank trials by how dominated they are."""
    pts = list(points)
    _check(pts)
    n = len(pts)
    dominated_by_count = [0] * n
    dominated_sets: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(pts[i], pts[j]):
                dominated_sets[i].append(j)
                dominated_by_count[j] += 1
            elif dominates(pts[j], pts[i]):
                dominated_sets[j].append(i)
                dominated_by_count[i] += 1
    fronts: list[list[Point]] = []
    current = [i for i in range(n) if dominated_by_count[i] == 0]
    while current:
        fronts.append(sorted((pts[i] for i in current), key=_front_order))
        following: list[int] = []
        for i in current:
            for j in dominated_sets[i]:
                dominated_by_count[j] -= 1
                if dominated_by_count[j] == 0:
                    following.append(j)
        current = following
    return fronts


def pareto_front(points: Sequence[Point]) -> list[Point]:
    """The non-dominated points sorted by flops, i.e. the only trials worth choosing between."""
    fronts = non_dominated_sort(points)
    return fronts[0] if fronts else []


def hypervolume(points: Sequence[Point], reference: tuple[float, float]) -> float:
    """Exact 2-D area dominated by the points inside the reference box, a single number for comparing searches.

    The area is that of {(ap, f): ap <= p.ap and p.flops <= f for some point p, ap >= ref_ap, f <= ref_flops}.
    Points with ap <= ref_ap or flops >= ref_flops contribute nothing.
    """
    ref_ap, ref_flops = reference
    if math.isnan(ref_ap) or math.isnan(ref_flops):
        raise ValueError(f"reference point {reference!r} contains NaN")
    pts = list(points)
    _check(pts)
    inside = [p for p in pts if p.ap > ref_ap and p.flops < ref_flops]
    if not inside:
        return 0.0
    front = pareto_front(inside)  # flops ascending, hence AP strictly increasing along distinct flops
    area = 0.0
    best_ap = ref_ap
    for i, p in enumerate(front):
        best_ap = max(best_ap, p.ap)
        next_flops = front[i + 1].flops if i + 1 < len(front) else ref_flops
        area += (next_flops - p.flops) * (best_ap - ref_ap)
    return float(area)


def reference_point(budget_flops: float) -> tuple[float, float]:
    """(0.0, budget_flops): fixed by the FLOPs budget, so hypervolumes of two searches with the same budget compare."""
    return (0.0, float(budget_flops))


def normalised_hypervolume(points: Sequence[Point], budget_flops: float) -> float:
    """Hypervolume divided by the largest possible (AP 1.0 at zero FLOPs), so it lies in [0, 1] for AP in [0, 1]."""
    if not budget_flops > 0:
        raise ValueError(f"budget_flops must be positive, got {budget_flops!r}")
    return hypervolume(points, reference_point(budget_flops)) / (1.0 * budget_flops)


def spread(ordered: Sequence[T], count: int) -> list[T]:
    """`count` items of a front in FLOPs order, spread evenly from its cheapest to its most accurate end (the ones
    worth confirming); all of them when it has no more."""
    if count >= len(ordered):
        return list(ordered)
    if count == 1:
        return [ordered[-1]]
    last = len(ordered) - 1
    return [ordered[round(i * last / (count - 1))] for i in range(count)]


# ---- any number of objectives (AP with FLOPs and latency) ---------------------------------------------------------
def dominates_nd(a: Sequence[float], b: Sequence[float]) -> bool:
    """`a` is no worse than `b` in every objective and better in one (every objective minimised)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


def non_dominated(vectors: dict[str, Sequence[float]]) -> set[str]:
    """The keys of the vectors no other vector dominates (every objective minimised; NaN refused)."""
    for key, vector in vectors.items():
        if any(v != v for v in vector):
            raise ValueError(f"point {key!r} has a NaN objective")
    items = list(vectors.items())
    return {k for k, v in items if not any(dominates_nd(w, v) for _, w in items)}


def hypervolume_nd(vectors: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """The volume the vectors dominate inside the box up to `reference` (every objective minimised), by pymoo's
    exact hypervolume indicator; vectors outside the box add nothing."""
    import numpy as np
    from pymoo.indicators.hv import HV

    inside = [list(v) for v in vectors if all(x < r for x, r in zip(v, reference, strict=True))]
    if not inside:
        return 0.0
    return float(HV(ref_point=np.asarray(reference, dtype=float))(np.asarray(inside, dtype=float)))
