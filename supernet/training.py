"""Supernet training: the sandwich rule with in-place distillation, on the same data, recipe and devices as train.py.

Each step runs the largest genome of the space (by FLOPs, within an optional budget), the smallest and N random ones
on the same batch and accumulates their gradients in the shared tensors before one Adam step. With distillation the
other subnets also learn from the largest one's detached output (a KL term between the spatial distributions for
softmax-CE, an MSE term for MSE). After every epoch rank 0 scores the largest, the smallest and every preset of the
space with inherited weights (BatchNorm recalibrated) and writes `supernet.pt`; a rerun resumes from it.
Data-parallel replicas sample the same genomes at every step and average their gradients once per step.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist
import yaml

from blocks.network import keep_freed_memory, prepare_for_training
from pose.dataset import model_input
from pose.device import CPU, Device
from pose.loading import ALONE, DEFAULT_LOADING, Loading, Replicas
from pose.loss_meter import LossMeter
from pose.losses import LOSSES
from pose.train import (
    Data,
    Progress,
    Recipe,
    batch_share,
    check_finite,
    learning_rate,
    sum_over_replicas,
    training_batches,
)
from search_space.budget import Budget, parse_budget
from search_space.genome import Genome
from search_space.presets import load_preset
from search_space.space import SearchSpace
from search_space.space_summary import presets_in
from supernet.calibrate import DEFAULT_CALIBRATION
from supernet.model import SuperNet
from supernet.sampling import Candidates, candidates
from supernet.score import score, scoring_set

CHECKPOINT = "supernet.pt"
NO_BUDGET = "none"  # --budget none: sample from the whole space
ROLES = ("largest", "smallest")  # the sandwich's fixed genomes, scored every epoch beside the space's presets


def spatial_kl(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) between each joint's spatial softmax distributions, averaged over joints."""
    n, j = student.shape[:2]
    log_p = torch.log_softmax(student.reshape(n, j, -1).float(), -1)
    log_q = torch.log_softmax(teacher.reshape(n, j, -1).float(), -1)
    return (log_q.exp() * (log_q - log_p)).sum(-1).mean()


def heatmap_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared difference to the teacher's heatmaps (for the MSE loss, whose outputs are heatmaps)."""
    return (student.float() - teacher.float()).square().mean()


# loss name -> the distillation term that matches how that loss reads the network's output
DISTILLATION: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "softmax-ce": spatial_kl,
    "mse": heatmap_mse,
}


@dataclass(frozen=True)
class SupernetRecipe:
    """What a supernet training computes beyond the standalone recipe (logged and checked on resume)."""

    sandwich: int = 2  # random genomes per step besides the largest and the smallest
    distill: bool = True  # in-place distillation from the largest subnet
    # Sample only genomes within this FLOPs budget (torchstat, 256x192; None: the whole space). The default is the
    # search's budget: a supernet is trained for the searches that will score genomes with it, and the space's
    # largest genomes (1.75 GFLOPs) would cost most of every step.
    budget: str | None = "0.5GFLOPs"
    calibration: int = DEFAULT_CALIBRATION  # BatchNorm calibration images when scoring after each epoch
    progressive: int = 1  # progressive shrinking: phases of equal epochs, each sampling more of the small genomes

    def parsed_budget(self) -> Budget | None:
        return None if self.budget is None or self.budget == NO_BUDGET else parse_budget(self.budget)


@dataclass(frozen=True)
class SpaceSource:
    """A search space with the YAML text it was read from (kept in the checkpoint, so `eval` needs no file)."""

    space: SearchSpace
    text: str

    @classmethod
    def from_file(cls, path: str | Path) -> SpaceSource:
        return cls(SearchSpace.from_file(path), Path(path).read_text())

    @classmethod
    def from_text(cls, text: str, source: str) -> SpaceSource:
        name = Path(source).stem
        return cls(SearchSpace.from_dict(yaml.safe_load(text), source=source, default_name=name), text)


def tracked_genomes(space: SearchSpace, pool: Candidates) -> dict[str, Genome]:
    """The genomes scored after every epoch: the largest, the smallest and the space's presets, by name."""
    return {"largest": pool.largest, "smallest": pool.smallest, **{n: load_preset(n) for n in presets_in(space)}}


def supernet_meta(source: SpaceSource, recipe: Recipe, options: SupernetRecipe) -> dict:
    """What makes two supernet trainings the same, but for the data (checked before the data are loaded). Without
    progressive shrinking the options read as before it existed, so earlier supernets resume and are reused."""
    settings = {k: v for k, v in asdict(options).items() if not (k == "progressive" and v == 1)}
    return {
        "space": source.text,
        "recipe": json.dumps(asdict(recipe), sort_keys=True),
        "supernet": json.dumps(settings, sort_keys=True),
    }


def checkpoint_meta(source: SpaceSource, recipe: Recipe, options: SupernetRecipe, data: Data) -> dict:
    return {**supernet_meta(source, recipe, options), "data": data.description}


def check_resumable(saved: dict, expected: dict, path: Path) -> None:
    """A ValueError naming what differs, when a checkpoint under --out belongs to another training (the keys of
    `expected` are compared)."""
    what = {"space": "search space", "recipe": "recipe", "supernet": "supernet options", "data": "data set"}
    for key, name in what.items():
        if key in expected and saved.get(key) != expected[key]:
            raise ValueError(f"{path} is a supernet of another {name}; use another --out or the same options")


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    """A supernet checkpoint (state_dicts and strings only: weights_only)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no supernet checkpoint ({CHECKPOINT}) there; train one with "
                                "`hrnas supernet train --out DIR`")  # fmt: skip
    state = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(state, dict) or "shared" not in state or "meta" not in state:
        raise ValueError(f"{path} is not a supernet checkpoint (written by `hrnas supernet train`)")
    return state


def read_meta(path: Path) -> dict:
    """A supernet checkpoint's meta (space, recipes, data) without reading its weights into memory (mmap)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no supernet checkpoint ({CHECKPOINT}) there; train one with "
                                "`hrnas supernet train --out DIR`")  # fmt: skip
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    if not isinstance(state, dict) or "meta" not in state:
        raise ValueError(f"{path} is not a supernet checkpoint (written by `hrnas supernet train`)")
    return state["meta"]


def train_supernet(
    source: SpaceSource,
    data: Data,
    recipe: Recipe,
    options: SupernetRecipe = SupernetRecipe(),
    out_dir: Path | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    quiet: bool = False,
    device: Device = CPU,
    replicas: Replicas = ALONE,
    loading: Loading = DEFAULT_LOADING,
    pool: Candidates | None = None,
    track: bool = True,
    initial: tuple[Genome, dict[str, torch.Tensor]] | None = None,
) -> dict:
    """Train the supernet of `source.space`; returns the last epoch's record, the history and the seconds. `pool`:
    the genomes to sample (default: `supernet.sampling.candidates` of the space within the budget). `track`: score
    the largest, the smallest and the space's presets after every epoch (off: a search scores its own genomes).
    `initial`: a member genome and its network's weights to start from (`--init-from`; a resumed run ignores it)."""
    torch.set_num_threads(recipe.threads)
    device.activate()
    if device.fast:
        keep_freed_memory()
    if options.sandwich < 0:
        raise ValueError(f"--sandwich {options.sandwich}: the number of random genomes must be 0 or more")
    if recipe.loss not in DISTILLATION:
        raise ValueError(f"no distillation term for loss {recipe.loss!r}; choose one of {', '.join(DISTILLATION)}")
    joints = len(data.train[0].keypoints)
    pool = pool or candidates(source.space, options.parsed_budget(), joints)
    supernet = SuperNet(source.space, joints, recipe.seed).to(device.device)
    prepare_for_training(supernet, fast=device.fast)
    optimizer = torch.optim.Adam(supernet.parameters(), lr=recipe.lr)
    scaler = device.grad_scaler()
    meta = checkpoint_meta(source, recipe, options, data)
    checkpoint = out_dir / CHECKPOINT if out_dir else None
    history: list[dict] = []
    resuming = checkpoint is not None and checkpoint.is_file()
    if initial is not None and not resuming:
        set_values = supernet.load_member(*initial)
        if not quiet:
            print(f"shared weights: {set_values} tensors from {initial[0].compact()}", file=sys.stderr)
    if resuming:
        state = load_checkpoint(checkpoint, device.device)
        check_resumable(state["meta"], meta, checkpoint)
        supernet.load_state_dict(state["shared"])
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        history = json.loads(state["history"])
    first_epoch = len(history)

    task = LOSSES[recipe.loss]
    distill = DISTILLATION[recipe.loss] if options.distill else None
    batches = training_batches(data, recipe, device, replicas, loading, first_epoch)
    sampler, loader, per_epoch = batches.sampler, batches.loader, batches.per_epoch
    tracked = tracked_genomes(source.space, pool)
    scores_here = replicas.rank == 0 and track
    scoring = scoring_set(data, recipe, options.calibration, None, device, loading) if scores_here else None
    total_iters = per_epoch * recipe.epochs
    progress = Progress(recipe.epochs, quiet)
    if not quiet:
        within = f" within {options.budget}" if options.budget else ""
        values = sum(p.numel() for p in supernet.parameters())
        print(f"supernet of space {source.space.name}: {len(pool.genomes):,} genomes to sample{within}, {values:,} "
              f"shared values; each step trains the largest, the smallest and {options.sandwich} random genome(s)",
              file=sys.stderr)  # fmt: skip
    for epoch in range(first_epoch, recipe.epochs):
        supernet.train()
        sampler.set_epoch(epoch)
        start, seen = time.perf_counter(), 0
        losses = {
            name: LossMeter(device.device, epoch, skip_nonfinite=scaler.is_enabled())
            for name in ("largest", "smallest", "sandwich")
        }
        for step, (images, targets, weights, _) in enumerate(loader):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(recipe, epoch * per_epoch + step, total_iters)
            images = model_input(images, device)
            targets, weights = (t.to(device.device, non_blocking=True) for t in (targets, weights))
            share = batch_share(task.denominator(weights), replicas.world) if replicas.world > 1 else None
            optimizer.zero_grad(set_to_none=True)
            teacher = None
            step_losses, genomes = [], []
            coming = next_step(epoch, step, len(loader), recipe.epochs)
            if coming is not None:  # built in the background while this step computes
                sampled = pool.phase(options.progressive, coming[0], recipe.epochs)
                supernet.prefetch(sampled.sandwich(options.sandwich, recipe.seed, *coming)[2:])
            sampled = pool.phase(options.progressive, epoch, recipe.epochs)
            for k, genome in enumerate(sampled.sandwich(options.sandwich, recipe.seed, epoch, step)):
                with device.autocast():
                    output = supernet(genome, images).float()
                loss = task.loss(output, targets, weights)
                if share is not None:
                    loss = loss * share
                if k == 0:
                    losses["largest"].add(loss, f"genome {genome.compact()}")
                    teacher = output.detach() if distill is not None else None
                elif teacher is not None:
                    loss = loss + distill(output, teacher)
                if k == 1:
                    losses["smallest"].add(loss, f"genome {genome.compact()}")
                scaler.scale(loss).backward()
                step_losses.append(loss.detach())
                genomes.append(genome.compact())
            if replicas.world > 1:
                average_gradients(supernet, replicas.world)
            scaler.step(optimizer)
            scaler.update()
            losses["sandwich"].add(torch.stack(step_losses).mean(), f"genomes {'; '.join(genomes)}")
            seen += len(images)
            progress.step(epoch, step + 1, len(loader), losses["sandwich"].mean)
        seconds = time.perf_counter() - start
        means = {name: meter.read() / replicas.world for name, meter in losses.items()}
        check_finite(supernet.parameters(), f"the shared weights became NaN or infinite during epoch {epoch + 1}")
        loss, seen = sum_over_replicas(means["sandwich"], seen, replicas, device)
        eval_start = time.perf_counter()
        scores = {}
        if scoring is not None:
            scores = {name: score(supernet, g, data, recipe, device=device, prepared=scoring)["ap"]
                      for name, g in tracked.items()}  # fmt: skip
            supernet.train()
        record = {
            "epoch": epoch + 1,
            "loss": loss,
            "loss_largest": means["largest"],
            "loss_smallest": means["smallest"],
            **{f"ap.{name}": value for name, value in scores.items()},
            "train_seconds": seconds,
            "eval_seconds": time.perf_counter() - eval_start,
            "images_per_second": seen / seconds,
            **device.memory_record(),
        }
        history.append(record)
        if not quiet:
            shown = "  ".join(f"{n} {scores[n]:.3f}" for n in scores)
            progress.line(epoch, f"loss {loss:.5f}  {record['images_per_second']:.1f} img/s  AP: {shown}", first_epoch)
        if checkpoint is not None and replicas.rank == 0:
            save_checkpoint(checkpoint, supernet, optimizer, scaler, history, meta)
        if on_epoch is not None:
            on_epoch(record)
    return {
        **{k: v for k, v in history[-1].items() if k not in {"epoch", "train_seconds", "eval_seconds"}},
        "epochs": recipe.epochs,
        "train_seconds": sum(h["train_seconds"] for h in history),
        "history": history,
        "tracked": {name: genome.compact() for name, genome in tracked.items()},
        "sampled_genomes": len(pool.genomes),
    }


def next_step(epoch: int, step: int, steps: int, epochs: int) -> tuple[int, int] | None:
    """The (epoch, step) after `step` of `epoch` in a training of `epochs` epochs of `steps` steps; None after the
    last."""
    if step + 1 < steps:
        return epoch, step + 1
    return (epoch + 1, 0) if epoch + 1 < epochs else None


def average_gradients(supernet: SuperNet, world: int) -> None:
    """The replicas' mean gradient in every shared tensor that has one (the same tensors on every replica: they
    train the same genomes), in one all-reduce of a flat buffer."""
    grads = [p.grad for p in supernet.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view(g.shape))
        offset += g.numel()


def save_checkpoint(path: Path, supernet: SuperNet, optimizer, scaler, history: list[dict], meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    state = {
        "shared": supernet.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "history": json.dumps(history),
        "meta": meta,
    }
    torch.save(state, tmp)
    tmp.replace(path)


def restore(path: Path, device: Device = CPU) -> tuple[SuperNet, SpaceSource, Recipe, SupernetRecipe, dict]:
    """A trained supernet from its checkpoint, with its space, recipes and meta (for scoring genomes)."""
    state = load_checkpoint(path, device.device)
    meta = state["meta"]
    source = SpaceSource.from_text(meta["space"], f"{path} (space)")
    recipe = recipe_from_json(meta["recipe"])
    options = SupernetRecipe(**json.loads(meta["supernet"]))
    joints = _joints_of(state["shared"])
    supernet = SuperNet(source.space, joints, recipe.seed).to(device.device)
    supernet.load_state_dict(state["shared"])
    return supernet, source, recipe, options, meta


def recipe_from_json(text: str) -> Recipe:
    """The Recipe that `json.dumps(asdict(recipe))` wrote (tuples and the augmentation dataclass restored)."""
    from pose.dataset import Augment

    values = json.loads(text)
    values["input_hw"] = tuple(values["input_hw"])
    values["augment"] = Augment(**values["augment"])
    return replace(Recipe(), **values)


def _joints_of(shared: dict[str, torch.Tensor]) -> int:
    """The joint count of a supernet's state: the output channels of its final layer."""
    for name, tensor in shared.items():
        if name.endswith("keypoint_head/final_layer/weight"):
            return int(tensor.shape[0])
    raise ValueError("the supernet checkpoint has no final layer")
