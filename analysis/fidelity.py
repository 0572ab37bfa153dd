"""How well a search signal ranks architectures: Kendall's tau against a reference ranking (published COCO AP).

Pure Python. tau-b: ties in either ranking count as neither concordant nor discordant, and the denominator is
corrected for them, so a signal that cannot tell two genomes apart is not rewarded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

# COCO val2017 AP at 256x192 of the Lite/Dite presets, as the papers print them (../shared/reference/published.md).
PUBLISHED_COCO_AP: dict[str, float] = {
    "naive-litehrnet-18": 0.628,
    "wider-naive-litehrnet-18": 0.660,
    "litehrnet-18": 0.648,
    "litehrnet-30": 0.672,
    "ditehrnet-18": 0.659,
    "ditehrnet-30": 0.683,
}


# Block design at equal cost against more FLOPs: (base, a design change of the same cost, a 60 % wider base).
DESIGN = ("naive-litehrnet-18", "ditehrnet-18", "wider-naive-litehrnet-18")
PUBLISHED_DESIGN_RATIO = 0.97  # (0.659 - 0.628) / (0.660 - 0.628)


def design_ratio(scores: Mapping[str, float]) -> float:
    """ditehrnet-18's gain over naive-litehrnet-18 divided by wider-naive-litehrnet-18's gain over it: how much a
    signal credits block design against width (nan when the width gain is zero)."""
    base, design, wider = (scores[n] for n in DESIGN)
    return (design - base) / (wider - base) if wider != base else math.nan


def describe_fidelity(scores: Mapping[str, float]) -> str:
    """One line: a signal's Kendall tau against the published AP over the presets it scored, and its design ratio
    when it scored the three presets that need."""
    names = [n for n in PUBLISHED_COCO_AP if n in scores]
    if len(names) < 2:
        return "fidelity not measured (fewer than two presets with a published AP scored)"
    text = f"Kendall tau {tau_against_published(scores):.2f} against the published COCO AP over {len(names)} presets"
    if set(DESIGN) <= set(scores):
        text += f", design ratio {design_ratio(scores):.2f} (published {PUBLISHED_DESIGN_RATIO})"
    return text


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b of two equally long score lists (1: same order, -1: reversed; nan if either is constant)."""
    if len(a) != len(b):
        raise ValueError(f"rankings of different lengths ({len(a)} and {len(b)})")
    concordant = discordant = ties_a = ties_b = 0
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            da, db = a[i] - a[j], b[i] - b[j]
            if da == 0 and db == 0:
                continue
            if da == 0:
                ties_a += 1
            elif db == 0:
                ties_b += 1
            elif (da > 0) == (db > 0):
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_a) * (concordant + discordant + ties_b))
    return (concordant - discordant) / denominator if denominator else math.nan


def tau_against_published(scores: Mapping[str, float], published: Mapping[str, float] = PUBLISHED_COCO_AP) -> float:
    """Kendall's tau of `scores` (preset name -> score) against the published AP of the same presets."""
    names = [name for name in published if name in scores]
    if len(names) < 2:
        raise ValueError("need scores of at least two presets with a published AP")
    return kendall_tau([scores[n] for n in names], [published[n] for n in names])
