"""A latency predictor fitted on the machine at hand (nn-Meter's idea, at the granularity hrnas counts at).

PoseNet is exactly its parts (`blocks.network.network_parts`), and the parts not made of pieces (stem,
transitions, each branch's blocks and context modules, fuses, heads) are fixed by their key and input shapes: the
whole default space is made of about 250 distinct ones. The table times each once, alone, on the target runtime.
A genome's prediction is a linear correction of the sum of its parts' times, `scale * sum + per_part * count +
offset`, fitted against whole-network measurements: what running the parts as one graph saves or adds (one call
instead of many, the splits, shuffles and concatenations between pieces, which run in no piece). The table is
cached per setting and machine fingerprint; parts a genome needs that the table lacks are timed when first asked
for, and kept.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from blocks.network import Part, prepare_for_training
from search_space.complexity import complexity_code_hash, leaf_inputs, zeros_of
from search_space.genome import Genome, GenomeError
from search_space.latency import Setting, machine_fingerprint, measure_latencies, runner, time_interleaved
from search_space.space import SearchSpace

TABLE_DIR = "latency"  # under the hrnas cache folder


def cache_dir() -> Path:
    return Path(os.environ.get("HRNAS_CACHE", Path.home() / ".cache" / "hrnas")) / TABLE_DIR


class _PartModule(nn.Module):
    """One part as a module of tensors (a list of branches becomes positional inputs and a tuple of outputs), so
    that it can be timed, and exported, alone."""

    def __init__(self, module: nn.Module, run: Callable[[nn.Module, Any], Any], branches: bool) -> None:
        super().__init__()
        self.part = module
        self.run = run
        self.branches = branches

    def forward(self, *xs: torch.Tensor):
        out = self.run(self.part, list(xs) if self.branches else xs[0])
        return tuple(out) if isinstance(out, list) else out


def part_key(part: Part, shapes) -> str:
    return repr((part.key, shapes))


def genome_parts(genome: Genome, setting: Setting, joints: int = 17) -> list[tuple[str, Part, Any]]:
    """(table key, part, input shapes) of every part of the genome's network, in run order."""
    spec = genome.resolve(joints)
    return [(part_key(p, s), p, s) for p, s in leaf_inputs(spec, (setting.batch, 3, *setting.input_hw))]


def time_part(part: Part, shapes, setting: Setting, folder: Path, seconds: float = 0.15) -> float:
    """The median ms of one part run alone on zeros of its input shapes."""
    zeros = zeros_of(shapes)
    branches = isinstance(zeros, list)
    example = tuple(zeros) if branches else (zeros,)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = _PartModule(part.build(), part.run, branches).eval()
    if setting.runtime == "ort":
        prepare_for_training(module, fast=False)  # the exported formulation (as blocks.onnx_export)
    run = runner(module, example, setting, folder)
    samples = time_interleaved({"part": run}, seconds=seconds, rounds=3, warmup=2)["part"]
    return statistics.median(samples) * 1000


@dataclass
class LatencyTable:
    """Per-part times (ms) for one setting on one machine, and the correction fitted to whole networks."""

    setting: Setting
    fingerprint: dict[str, str]
    code: str  # the modules' source hash: parts change when blocks change
    parts: dict[str, float] = field(default_factory=dict)
    scale: float = 1.0
    per_part_ms: float = 0.0
    offset_ms: float = 0.0
    fitted_on: list[str] = field(default_factory=list)  # compact genomes measured whole for the correction
    fit_seconds: float = 0.0

    # ---- prediction ---------------------------------------------------------------------------------------------
    def features(self, genome: Genome, timing: Callable[[Part, Any], float] | None = None) -> tuple[float, int]:
        """The sum of the genome's part times and their number; a part the table lacks is timed by `timing` (and
        kept) or is a KeyError naming it."""
        total, count = 0.0, 0
        for key, part, shapes in genome_parts(genome, self.setting):
            if key not in self.parts:
                if timing is None:
                    raise KeyError(key)
                self.parts[key] = timing(part, shapes)
            total += self.parts[key]
            count += 1
        return total, count

    def predict(self, genome: Genome, timing: Callable[[Part, Any], float] | None = None) -> float:
        """Predicted latency in ms."""
        total, count = self.features(genome, timing)
        return self.scale * total + self.per_part_ms * count + self.offset_ms

    def covers(self, genome: Genome) -> bool:
        return all(key in self.parts for key, _, _ in genome_parts(genome, self.setting))

    # ---- storage -----------------------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "setting": self.setting.as_config(),
            "fingerprint": self.fingerprint,
            "code": self.code,
            "parts": self.parts,
            "scale": self.scale,
            "per_part_ms": self.per_part_ms,
            "offset_ms": self.offset_ms,
            "fitted_on": self.fitted_on,
            "fit_seconds": self.fit_seconds,
        }

    @classmethod
    def from_json(cls, data: dict) -> LatencyTable:
        setting = Setting.from_config(data["setting"])
        return cls(setting, data["fingerprint"], data["code"], data["parts"], data["scale"], data["per_part_ms"],
                   data["offset_ms"], data["fitted_on"], data.get("fit_seconds", 0.0))  # fmt: skip

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json()))
        tmp.replace(path)
        return path


def predict_latency(table: LatencyTable, genome: Genome, save: bool = True) -> float:
    """The table's prediction for `genome`, timing (and keeping) the parts it lacks first."""
    known = len(table.parts)
    with tempfile.TemporaryDirectory(prefix="hrnas-parts-") as tmp:
        folders = (Path(tmp) / str(i) for i in itertools.count())

        def timing(part: Part, shapes) -> float:
            folder = next(folders)
            folder.mkdir()
            return time_part(part, shapes, table.setting, folder)

        predicted = table.predict(genome, timing)
    if save and len(table.parts) > known:
        table.save(table_path(table.setting, table.fingerprint))
    return predicted


def table_path(setting: Setting, fingerprint: dict[str, str] | None = None, folder: Path | None = None) -> Path:
    """Where the table of this setting on this machine is cached."""
    fingerprint = fingerprint or machine_fingerprint()
    digest = hashlib.sha1(json.dumps([fingerprint, complexity_code_hash()], sort_keys=True).encode()).hexdigest()[:12]
    return (folder or cache_dir()) / f"{setting.key()}-{digest}.json"


def load_table(setting: Setting, folder: Path | None = None) -> LatencyTable | None:
    """The cached table of this setting on this machine, if one was fitted."""
    path = table_path(setting, folder=folder)
    return LatencyTable.from_json(json.loads(path.read_text())) if path.is_file() else None


# ---- fitting ----------------------------------------------------------------------------------------------------
def random_genomes(space: SearchSpace, count: int, seed: int, exclude: Iterable[str] = ()) -> list[Genome]:
    """`count` distinct valid genomes of the space drawn uniformly gene by gene (seeded), none in `exclude`."""
    rng = random.Random(seed)
    seen = set(exclude)
    choices = space.parameters()
    out: list[Genome] = []
    misses = 0
    while len(out) < count and misses < 1000:  # a small space runs out of new genomes
        misses += 1
        try:
            genome = space.genome({name: rng.choice(values) for name, values in choices.items()})
            genome.resolve(17)
        except (GenomeError, ValueError):
            continue
        if genome.canonical_line() not in seen:
            seen.add(genome.canonical_line())
            out.append(genome)
            misses = 0
    return out


FULL_FIT_MINIMUM = 8  # genomes below which the correction is the scale alone (3 parameters would interpolate)


def least_squares(features: list[tuple[float, int]], measured: list[float]) -> tuple[float, float, float]:
    """scale, per_part, offset minimising the squared relative error of scale * sum + per_part * count + offset
    against measured (relative: a 5 ms net matters as much as a 200 ms one).

    With fewer than FULL_FIT_MINIMUM genomes, or part counts and sums that do not vary independently (a space
    whose genomes differ in width only), three parameters would pass through the points and extrapolate to
    nonsense (a negative latency for a deeper genome); the fit is then the scale alone, which stays positive."""
    weights = 1.0 / np.asarray(measured)
    a = np.array([[total, count, 1.0] for total, count in features]) * weights[:, None]
    if len(measured) >= FULL_FIT_MINIMUM and np.linalg.matrix_rank(a) == 3:
        (scale, per_part, offset), *_ = np.linalg.lstsq(a, np.ones(len(measured)), rcond=None)
        return float(scale), float(per_part), float(offset)
    ratios = a[:, 0]  # sum / measured per genome
    return float(ratios.sum() / (ratios**2).sum()), 0.0, 0.0


def fit_table(
    genomes: list[Genome],
    setting: Setting,
    progress: Callable[[str], None] = lambda _: None,
    table: LatencyTable | None = None,
    seconds_per_genome: float = 1.5,
    cover: list[Genome] = (),
) -> LatencyTable:
    """Time every part of `genomes` and `cover` (those `table` lacks), measure `genomes` whole, fit the
    correction."""
    start = time.perf_counter()
    table = table or LatencyTable(setting, machine_fingerprint(), complexity_code_hash())
    with tempfile.TemporaryDirectory(prefix="hrnas-parts-") as tmp:
        missing: dict[str, tuple[Part, Any]] = {}
        for genome in [*genomes, *cover]:
            for key, part, shapes in genome_parts(genome, setting):
                if key not in table.parts:
                    missing.setdefault(key, (part, shapes))
        for i, (key, (part, shapes)) in enumerate(missing.items()):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            table.parts[key] = time_part(part, shapes, setting, folder)
            if (i + 1) % 25 == 0 or i + 1 == len(missing):
                progress(f"  parts timed: {i + 1}/{len(missing)} ({time.perf_counter() - start:.0f} s)")
    progress(f"  measuring {len(genomes)} genomes whole ...")
    measured = measure_latencies({g.canonical_line(): g for g in genomes}, setting, seconds_per_genome)
    features = [table.features(g) for g in genomes]
    fitted = least_squares(features, [measured[g.canonical_line()].median_ms for g in genomes])
    table.scale, table.per_part_ms, table.offset_ms = fitted
    table.fitted_on = [g.canonical_line() for g in genomes]
    table.fit_seconds = time.perf_counter() - start
    return table


FIT_GENOMES = 24  # genomes a table's correction is fitted on: the space's presets, then random ones
COVER_GENOMES = 2000  # random genomes whose parts are timed too (the default space's ~250 parts: all of them)


def fit_space(
    space: SearchSpace,
    setting: Setting,
    presets: dict[str, Genome],
    count: int = FIT_GENOMES,
    seed: int = 0,
    progress: Callable[[str], None] = lambda _: None,
    folder: Path | None = None,
    cover_count: int = COVER_GENOMES,
) -> tuple[LatencyTable, Path]:
    """Fit (or extend) this machine's table for `setting`: the parts of `cover_count` random genomes of the space
    timed, `count` genomes (its presets first) measured whole for the correction; cached, returned with its path."""
    inside = []
    for genome in presets.values():
        try:
            space.params_of(genome)
        except ValueError:
            continue
        inside.append(genome)
    genomes = (inside + random_genomes(space, count, seed, {g.canonical_line() for g in inside}))[:count]
    cover = random_genomes(space, cover_count, seed + 1)
    progress(f"latency table for {setting.describe()}: timing the parts of {len(genomes) + len(cover)} genomes of "
             f"space {space.name!r}, then measuring {len(genomes)} of them whole ...")  # fmt: skip
    table = fit_table(genomes, setting, progress, load_table(setting, folder), cover=cover)
    path = table.save(table_path(setting, table.fingerprint, folder))
    progress(f"  fitted in {table.fit_seconds:.0f} s on {len(table.parts)} distinct parts: latency = "
             f"{table.scale:.3f} x the sum of the part times {table.per_part_ms:+.4f} ms per part "
             f"{table.offset_ms:+.2f} ms; saved to {path}")  # fmt: skip
    return table, path
