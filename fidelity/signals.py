"""The search's signals, scored on a truth's genomes: which exist, how the cheap ones are computed, their lines.

A signal line is `{signal, genome, seed, score, cpu_seconds}`; a higher score predicts a higher truth AP (a counted
cost enters as it is: "bigger is better"). Kinds:
- `counted`: exact counts (FLOPs in the search's convention at 256x192, params); no training;
- `latency`: predicted by this machine's latency table, or measured (`latency-measured`, onnxruntime, CPU);
- `proxy`: zero-cost proxies at initialisation (`fidelity.proxies`), two seeds;
- `trained`: the genome's own short training, final-epoch AP: the search's trial recipe cut to k epochs
  (`trials-k`) or the `train` recipe (`train-12`); run as Ray trials by `nas.signals_run`;
- `one-shot`: the AP it inherits from a supernet trained with `hrnas supernet train`'s defaults, scored as
  `search --strategy one-shot` scores (BatchNorm recalibrated, COCOeval). Variants (on the subset) are named by
  what they change, in this order: `one-shot-<N>ep` (a supernet of N epochs), `-ps<P>` (progressive shrinking in P
  phases, `hrnas supernet train --progressive`), `-sw<K>` (K random genomes per sandwich step instead of 2,
  `--sandwich`), `-init` (its shared weights started from the truth's kept checkpoint of its largest genome),
  `-split-<gene>` (few-shot NAS: one sub-supernet, with weights of its own, per value the space gives the gene; a
  genome is scored by the one whose space holds it), `-cal<C>` (C calibration images), `-ft<S>` (S steps of
  per-genome fine-tuning before calibration), e.g. `one-shot-12ep-init-cal1024-ft20` or `one-shot-6ep-split-stem`.
Expensive signals (`subset`) are computed on a subset of the truth's genomes spread over their FLOPs.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import yaml

from fidelity.proxies import PROXIES, Batch, proxy_score
from fidelity.sample import Member, spread
from pose.train import Recipe
from search_space.complexity import genome_complexity
from search_space.genes import GENES
from search_space.genome import Genome

SUBSET = 12  # genomes an expensive signal is computed on
DEFAULT_SUPERNET_EPOCHS = 3  # `hrnas supernet train`'s default, what `search --strategy one-shot` trains
ONE_SHOT_SCORES = 150  # genomes a default one-shot search scores: its supernet's training is shared by as many


@dataclass(frozen=True)
class SignalSpec:
    name: str
    kind: str  # counted | latency | proxy | trained | one-shot
    subset: bool = False
    seeds: tuple[int, ...] = (0,)
    base: str = ""  # trained: "trial" (the search's trial recipe) or "train" (hrnas train's)
    epochs: int = 0  # trained: epochs of its recipe; one-shot: the supernet's
    one_shot: OneShotVariant | None = None  # one-shot: how its supernet is trained and its genomes scored


@dataclass(frozen=True)
class OneShotVariant:
    """A one-shot signal's supernet training and scoring settings (None: `hrnas supernet train`'s default)."""

    epochs: int = 0  # 0: the default length
    init: bool = False  # shared weights from the truth's kept checkpoint of its largest genome
    calibration: int | None = None
    finetune_steps: int = 0
    split: str | None = None  # few-shot: a sub-supernet per value of this gene
    progressive: int = 1  # progressive shrinking in this many phases (`hrnas supernet train --progressive`)
    sandwich: int | None = None  # random genomes per sandwich step (None: `hrnas supernet train`'s default)

    def supernet_folder(self) -> str:
        """The folder name of the supernet(s) this variant trains (variants differing only in scoring share it)."""
        name = f"supernet-{self.epochs or DEFAULT_SUPERNET_EPOCHS}ep"
        name += f"-ps{self.progressive}" if self.progressive > 1 else ""
        name += (f"-sw{self.sandwich}" if self.sandwich is not None else "") + ("-init" if self.init else "")
        return name + (f"-split-{self.split}" if self.split else "")


def split_spaces(text: str, gene: str) -> list[str]:
    """A space file's text as one sub-space per value of `gene` (few-shot NAS), each named `<name>-<gene><i>`;
    ValueError if the space does not choose that gene."""
    body = yaml.safe_load(text)
    values = (body.get("genes") or {}).get(gene)
    if not isinstance(values, list) or len(values) < 2:
        raise ValueError(f"-split-{gene}: the space does not choose {gene} (it needs two values or more to split)")
    name = body.get("name", "space")
    return [
        yaml.safe_dump(
            {**body, "name": f"{name}-{gene}{i}", "genes": {**body["genes"], gene: [value]}}, sort_keys=False
        )
        for i, value in enumerate(values)
    ]


SIGNALS: dict[str, SignalSpec] = {
    s.name: s
    for s in [
        SignalSpec("flops", "counted"),
        SignalSpec("params", "counted"),
        SignalSpec("latency", "latency"),
        SignalSpec("latency-measured", "latency", subset=True),
        *(SignalSpec(name, "proxy", seeds=(0, 1)) for name in PROXIES),
        SignalSpec("trials-1", "trained", subset=True, base="trial", epochs=1),
        SignalSpec("trials-2", "trained", subset=True, base="trial", epochs=2),
        SignalSpec("trials-4", "trained", subset=True, base="trial", epochs=4),
        SignalSpec("train-12", "trained", subset=True, base="train", epochs=Recipe().epochs),
        SignalSpec("one-shot", "one-shot", epochs=DEFAULT_SUPERNET_EPOCHS, one_shot=OneShotVariant()),
    ]
}
ONE_SHOT_VARIANT = re.compile(
    r"one-shot(?:-(?P<epochs>\d+)ep)?(?:-ps(?P<progressive>\d+))?(?:-sw(?P<sandwich>\d+))?(?P<init>-init)?"
    r"(?:-split-(?P<split>[a-z_]+))?(?:-cal(?P<calibration>\d+))?(?:-ft(?P<finetune_steps>\d+))?"
)
VARIANT_HELP = "one-shot[-<N>ep][-ps<P>][-sw<K>][-init][-split-<gene>][-cal<C>][-ft<S>]"


def signal_spec(name: str) -> SignalSpec:
    """The spec of a signal name (a one-shot variant, `VARIANT_HELP`, is computed on the subset); ValueError
    otherwise."""
    if name in SIGNALS:
        return SIGNALS[name]
    match = ONE_SHOT_VARIANT.fullmatch(name)
    groups = match.groupdict() if match else {}
    numbers = {k: int(v) for k, v in groups.items() if k not in ("init", "split") and v is not None}
    counts = all(v > 0 or k == "sandwich" for k, v in numbers.items())  # a sandwich of 0: the largest and smallest
    if match and counts and (groups["split"] is None or groups["split"] in GENES):
        variant = OneShotVariant(init=bool(match["init"]), split=groups["split"], **numbers)
        epochs = variant.epochs or DEFAULT_SUPERNET_EPOCHS
        return SignalSpec(name, "one-shot", subset=True, epochs=epochs, one_shot=variant)
    raise ValueError(f"unknown signal {name!r}; choose from {', '.join(SIGNALS)} or {VARIANT_HELP}")


def genomes_for(spec: SignalSpec, members: list[Member], subset: int = SUBSET) -> list[Member]:
    return spread(members, subset) if spec.subset else list(members)


def line(signal: str, genome: str, seed: int, score: float, cpu_seconds: float, one_off: float | None = None) -> dict:
    """A signal line; `one_off` is the CPU-seconds paid once for all genomes (a one-shot variant's supernet
    training), of which `cpu_seconds` already holds this genome's share."""
    row = {"signal": signal, "genome": genome, "seed": seed, "score": score, "cpu_seconds": round(cpu_seconds, 3)}
    return row | ({} if one_off is None else {"one_off_cpu_seconds": round(one_off, 1)})


def timed(compute: Callable[[], float]) -> tuple[float, float]:
    """(score, CPU-seconds of this process)."""
    start = time.process_time()
    score = compute()
    return score, time.process_time() - start


def counted(name: str, genome: Genome) -> float:
    complexity = genome_complexity(genome)
    return float(complexity.flops["torchstat"] if name == "flops" else complexity.params)


def proxy(name: str, genome: Genome, batch: Batch, recipe: Recipe) -> float:
    return proxy_score(name, genome, batch, recipe)
