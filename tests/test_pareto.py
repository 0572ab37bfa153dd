"""Tests for analysis.pareto against brute-force definitions on random point sets."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from analysis.pareto import (
    Point,
    dominates,
    hypervolume,
    hypervolume_nd,
    non_dominated,
    non_dominated_sort,
    normalised_hypervolume,
    pareto_front,
    reference_point,
    spread,
)

SEEDS = [0, 1, 2, 3, 7, 42, 123, 2024]


def random_points(seed: int, lo: float = 0.0, hi: float = 1.0, flops_hi: float = 10.0) -> list[Point]:
    """1..60 points with values rounded coarsely so ties and exact duplicates are common."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 61))
    aps = np.round(rng.uniform(lo, hi, n), 1)
    flops = np.round(rng.uniform(0.0, flops_hi, n), 0)
    points = [Point(f"t{i}", float(a), float(f)) for i, (a, f) in enumerate(zip(aps, flops, strict=True))]
    # force at least one exact duplicate of objectives under a different key
    points.append(Point("dup", points[0].ap, points[0].flops))
    return points


def brute_dominates(a: Point, b: Point) -> bool:
    return (a.ap >= b.ap and a.flops <= b.flops) and (a.ap, a.flops) != (b.ap, b.flops)


def brute_ranks(points: list[Point]) -> dict[str, int]:
    """Rank = length of the longest chain of dominators above a point (an independent characterisation)."""
    ranks: dict[str, int] = {}

    def rank(p: Point) -> int:
        if p.key not in ranks:
            dominators = [q for q in points if brute_dominates(q, p)]
            ranks[p.key] = 0 if not dominators else 1 + max(rank(q) for q in dominators)
        return ranks[p.key]

    for p in points:
        rank(p)
    return ranks


def brute_hypervolume(points: list[Point], reference: tuple[float, float]) -> float:
    """Union area of rectangles [ref_ap, ap] x [flops, ref_flops] summed over cells of the unique-coordinate grid."""
    ref_ap, ref_flops = reference
    rects = [(p.ap, p.flops) for p in points if p.ap > ref_ap and p.flops < ref_flops]
    xs = sorted({ref_ap} | {ap for ap, _ in rects})
    ys = sorted({ref_flops} | {f for _, f in rects})
    area = 0.0
    for x0, x1 in zip(xs, xs[1:], strict=False):
        for y0, y1 in zip(ys, ys[1:], strict=False):
            if any(ap >= x1 and f <= y0 for ap, f in rects):
                area += (x1 - x0) * (y1 - y0)
    return area


# --- dominates -----------------------------------------------------------------------------------------------


def test_dominates_basic():
    a = Point("a", 0.7, 100.0)
    assert dominates(a, Point("b", 0.6, 100.0))
    assert dominates(a, Point("c", 0.7, 120.0))
    assert dominates(a, Point("d", 0.5, 200.0))
    assert not dominates(a, Point("e", 0.7, 100.0))  # equal objectives: neither dominates
    assert not dominates(a, Point("f", 0.8, 120.0))  # trade-off
    assert not dominates(Point("g", 0.6, 100.0), a)


# --- non-dominated sort ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_non_dominated_sort_matches_brute_force(seed):
    points = random_points(seed)
    fronts = non_dominated_sort(points)
    ranks = brute_ranks(points)

    # every point in exactly one front
    keys = [p.key for front in fronts for p in front]
    assert Counter(keys) == Counter(p.key for p in points)
    assert all(front for front in fronts)

    # front index equals the brute-force rank
    for k, front in enumerate(fronts):
        for p in front:
            assert ranks[p.key] == k, (p, k)

    for k, front in enumerate(fronts):
        # sorted by flops ascending
        assert [p.flops for p in front] == sorted(p.flops for p in front)
        # no point in front k is dominated by a point in front >= k
        for later in fronts[k:]:
            for q in later:
                for p in front:
                    assert not dominates(q, p), (q, p)
        # every point in front k>0 is dominated by some point in front k-1
        if k > 0:
            for p in front:
                assert any(dominates(q, p) for q in fronts[k - 1]), p


@pytest.mark.parametrize("seed", SEEDS)
def test_pareto_front_matches_brute_force(seed):
    points = random_points(seed)
    expected = {p.key for p in points if not any(brute_dominates(q, p) for q in points)}
    front = pareto_front(points)
    assert {p.key for p in front} == expected
    assert len(front) == len(expected)
    assert [p.flops for p in front] == sorted(p.flops for p in front)


def test_duplicates_share_a_front():
    points = [Point("a", 0.5, 10.0), Point("b", 0.5, 10.0), Point("c", 0.4, 12.0), Point("d", 0.4, 12.0)]
    fronts = non_dominated_sort(points)
    assert [{p.key for p in f} for f in fronts] == [{"a", "b"}, {"c", "d"}]


def test_empty_input():
    assert non_dominated_sort([]) == []
    assert pareto_front([]) == []
    assert hypervolume([], (0.0, 1.0)) == 0.0


# --- hypervolume -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_hypervolume_matches_brute_force(seed):
    # AP in [-0.2, 1.0) and flops in [0, 12] so that some points fall outside the reference box (0, 10)
    points = random_points(seed, lo=-0.2, hi=1.0, flops_hi=12.0)
    ref = reference_point(10.0)
    # and always some on or beyond the box edges
    points += [Point("ap_below", -0.1, 1.0), Point("ap_at_ref", 0.0, 0.0), Point("at_budget", 0.9, 10.0)]
    points += [Point("over_budget", 0.99, 11.0)]
    assert hypervolume(points, ref) == pytest.approx(brute_hypervolume(points, ref), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_hypervolume_unrounded_and_nonzero_reference(seed):
    rng = np.random.default_rng(1000 + seed)
    n = int(rng.integers(1, 61))
    points = [Point(f"p{i}", float(a), float(f)) for i, (a, f) in enumerate(rng.uniform(0, 1, (n, 2)))]
    ref = (0.3, 0.8)
    assert hypervolume(points, ref) == pytest.approx(brute_hypervolume(points, ref), rel=1e-12, abs=1e-12)


def test_hypervolume_single_point():
    assert hypervolume([Point("a", 0.6, 30.0)], reference_point(100.0)) == pytest.approx(0.6 * 70.0)


def test_hypervolume_two_point_staircase():
    points = [Point("a", 0.5, 20.0), Point("b", 0.8, 60.0)]
    # 0.5 * (60 - 20) + 0.8 * (100 - 60)
    assert hypervolume(points, reference_point(100.0)) == pytest.approx(0.5 * 40.0 + 0.8 * 40.0)


def test_dominated_point_adds_nothing():
    base = [Point("a", 0.6, 30.0), Point("b", 0.7, 50.0)]
    ref = reference_point(100.0)
    assert hypervolume(base + [Point("c", 0.55, 40.0)], ref) == pytest.approx(hypervolume(base, ref))
    assert hypervolume(base + [Point("d", 0.6, 30.0)], ref) == pytest.approx(hypervolume(base, ref))


def test_points_outside_reference_add_nothing():
    base = [Point("a", 0.6, 30.0)]
    ref = reference_point(100.0)
    outside = [Point("over", 0.9, 100.0), Point("way_over", 0.95, 150.0), Point("zero_ap", 0.0, 1.0)]
    assert hypervolume(base + outside, ref) == pytest.approx(hypervolume(base, ref))
    assert hypervolume(outside, ref) == 0.0


def test_reference_point_and_normalised():
    assert reference_point(250.0) == (0.0, 250.0)
    assert normalised_hypervolume([Point("a", 0.5, 50.0)], 100.0) == pytest.approx(0.5 * 50.0 / 100.0)
    assert normalised_hypervolume([Point("best", 1.0, 0.0)], 100.0) == pytest.approx(1.0)
    assert normalised_hypervolume([], 100.0) == 0.0
    with pytest.raises(ValueError):
        normalised_hypervolume([], 0.0)


@pytest.mark.parametrize("seed", SEEDS)
def test_normalised_hypervolume_in_unit_interval(seed):
    value = normalised_hypervolume(random_points(seed, flops_hi=12.0), 10.0)
    assert 0.0 <= value <= 1.0


# --- NaN -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ap", "flops"), [(math.nan, 1.0), (0.5, math.nan), (np.float32("nan"), 1.0)])
def test_nan_rejected_with_key(ap, flops):
    with pytest.raises(ValueError, match="trial_17"):
        Point("trial_17", ap, flops)


def test_nan_in_duck_typed_point_rejected_with_key():
    class Loose:  # bypasses Point validation, as e.g. a results row object might
        def __init__(self, key, ap, flops):
            self.key, self.ap, self.flops = key, ap, flops

    bad = Loose("trial_99", math.nan, 1.0)
    with pytest.raises(ValueError, match="trial_99"):
        non_dominated_sort([Point("ok", 0.5, 1.0), bad])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="trial_99"):
        hypervolume([bad], (0.0, 10.0))  # type: ignore[list-item]


def test_nan_reference_rejected():
    with pytest.raises(ValueError):
        hypervolume([Point("a", 0.5, 1.0)], (0.0, math.nan))


def test_kendall_tau_counts_pairs_and_ties():
    from analysis.fidelity import PUBLISHED_COCO_AP, kendall_tau, tau_against_published

    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)  # 2 concordant, 1 discordant pair
    assert kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))  # tau-b with a tie
    assert math.isnan(kendall_tau([1, 1], [1, 2]))
    assert tau_against_published(dict(PUBLISHED_COCO_AP)) == 1.0
    from search_space.complexity import genome_complexity
    from search_space.presets import load_preset

    flops = {name: genome_complexity(load_preset(name)).flops["torchstat"] for name in PUBLISHED_COCO_AP}
    assert tau_against_published(flops) == 1.0  # FLOPs alone orders the six Lite/Dite presets as COCO does
    assert tau_against_published({**flops, "naive-litehrnet-18": 10**12}) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="different lengths"):
        kendall_tau([1], [1, 2])


def test_spread_picks_both_ends_and_evenly_between():
    items = list(range(10))
    assert spread(items, 2) == [0, 9] and spread(items, 4) == [0, 3, 6, 9] and spread(items, 1) == [9]
    assert spread(items, 10) == items and spread(items, 30) == items and spread([], 3) == []


def brute_force_volume(vectors: list[tuple[float, ...]], reference: tuple[float, ...]) -> float:
    """The dominated volume summed over the cells of the grid every coordinate cuts (exact for boxes)."""
    import itertools

    axes = [sorted({v[d] for v in vectors if v[d] < reference[d]} | {reference[d]}) for d in range(len(reference))]
    volume = 0.0
    for cell in itertools.product(*(range(len(a) - 1) for a in axes)):
        low = [axes[d][i] for d, i in enumerate(cell)]
        if any(all(v[d] <= low[d] for d in range(len(low))) for v in vectors):
            volume += math.prod(axes[d][i + 1] - axes[d][i] for d, i in enumerate(cell))
    return volume


@pytest.mark.parametrize("seed", SEEDS[:5])
def test_three_objective_front_and_hypervolume_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    vectors = {f"p{i}": tuple(float(x) for x in rng.integers(0, 8, size=3)) for i in range(25)}
    front = non_dominated(vectors)
    expected = {
        k for k, v in vectors.items()
        if not any(all(w[d] <= v[d] for d in range(3)) and w != v for w in vectors.values())
    }  # fmt: skip
    assert front == expected
    reference = (8.0, 9.0, 10.0)
    assert hypervolume_nd(list(vectors.values()), reference) == pytest.approx(
        brute_force_volume(list(vectors.values()), reference)
    )
    # the front alone dominates the same volume; points outside the box add nothing
    assert hypervolume_nd([vectors[k] for k in front], reference) == pytest.approx(
        hypervolume_nd([*vectors.values(), (20.0, 0.0, 0.0)], reference)
    )


def test_two_objective_vectors_agree_with_the_point_front():
    rng = np.random.default_rng(3)
    pts = [Point(f"p{i}", float(rng.random()), float(rng.integers(1, 50))) for i in range(40)]
    assert non_dominated({p.key: (-p.ap, p.flops) for p in pts}) == {p.key for p in pareto_front(pts)}
    assert hypervolume_nd([(-p.ap, p.flops) for p in pts], (0.0, 60.0)) == pytest.approx(hypervolume(pts, (0.0, 60.0)))
