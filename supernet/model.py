"""The supernet: one shared tensor per parameter name of a space, and any genome's network run on its slices.

`SuperNet(space)` holds the shared tensors (`supernet.sharing`); `forward(genome, x)` runs the genome's PoseNet
skeleton (its own modules and BatchNorm running statistics, no parameters of its own) with
`torch.func.functional_call` on the genome's slices, so gradients land in the shared tensors and add up over the
genomes of a step. `extract(genome)` gives the zoo's standalone PoseNet with the slices copied in.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call
from torch.overrides import TorchFunctionMode

from blocks.network import PoseNet, prepare_for_training
from search_space.genome import Genome
from search_space.space import SearchSpace
from supernet.sharing import Shape, SharedShapes, SharingError, shared_shapes, slices

CHANNELS_LAST_RANK = 4  # the rank of the conv weights that `prepare_for_training` lays out channels-last


def _key(name: str) -> str:
    """A parameter name as a key of the supernet's ParameterDict (which forbids dots)."""
    return name.replace(".", "/")


@dataclass(frozen=True)
class _Take:
    """How one parameter of a subnet is read from the supernet: shared tensor key and index."""

    name: str
    key: str
    index: tuple[slice, ...]


class Subnet:
    """A genome's skeleton: PoseNet's modules with parameters on the meta device (never used: `SuperNet.forward`
    passes the slices) and its own BatchNorm running statistics on the supernet's device."""

    def __init__(self, genome: Genome, skeleton: PoseNet, takes: tuple[_Take, ...], fast: bool) -> None:
        self.genome, self.skeleton, self.takes, self.fast = genome, skeleton, takes, fast

    def buffers(self) -> dict[str, torch.Tensor]:
        return dict(self.skeleton.named_buffers())


class SuperNet(nn.Module):
    """Every genome of `space` in one module (see `supernet.sharing` for the rule).

    Initialisation (seeded by `seed`): each shared tensor takes the PyTorch default initialisation of the module
    that owns its name in its largest instance (the part of the space with the most elements for that name, built
    alone on the CPU); where that instance is smaller than the shared shape in some dimension (the largest shape
    combines several genomes), the rest of a conv/linear weight is PyTorch's conv default (kaiming-uniform,
    a=sqrt(5)) at the shared shape, with that instance's values in its slice.
    """

    def __init__(
        self,
        space: SearchSpace,
        joints: int = 17,
        seed: int = 0,
        cache_size: int = 8,
        shapes: SharedShapes | None = None,
    ) -> None:
        super().__init__()
        self.space, self.joints, self.cache_size = space, joints, cache_size
        union = shapes if shapes is not None else shared_shapes(space.valid_genomes(), joints)
        self.shapes: dict[str, Shape] = dict(union.shapes)
        self.shared = nn.ParameterDict(
            {_key(name): nn.Parameter(tensor) for name, tensor in _initial_values(union, seed).items()}
        )
        self._subnets: OrderedDict[tuple[str, bool, str], Subnet] = OrderedDict()
        self._pending: OrderedDict[tuple[str, bool, str], Future[Subnet]] = OrderedDict()

    # ---- genomes ------------------------------------------------------------------------------------------
    def check(self, genome: Genome) -> None:
        """ValueError (SpaceError) naming the gene and the values the space allows, for a genome outside it."""
        self.space.params_of(genome)

    def shared_tensor(self, name: str) -> nn.Parameter:
        """The shared tensor of a parameter name of PoseNet (`stages.0.0.layers.0.0.conv1.0.weight`)."""
        return self.shared[_key(name)]

    def subnet(self, genome: Genome) -> Subnet:
        """The genome's skeleton for the supernet's device and layout (memoised, the `cache_size` most recently
        used; an evicted one loses its BatchNorm statistics), taken from `prefetch` when it built it."""
        cache_key = self._cache_key(genome)
        found = self._subnets.get(cache_key)
        if found is not None:
            self._subnets.move_to_end(cache_key)
            return found
        pending = self._pending.pop(cache_key, None)
        if pending is not None:
            found = pending.result()
        else:
            self.check(genome)
            found = _build_subnet(genome, self.joints, self.shapes, self.device, cache_key[1])
        self._subnets[cache_key] = found
        while len(self._subnets) > self.cache_size:
            self._subnets.popitem(last=False)
        return found

    def prefetch(self, genomes: Iterable[Genome]) -> None:
        """Build the skeletons of `genomes` that are neither cached nor on their way in a background thread, for
        `subnet` to take when they run. A skeleton is hundreds of modules built in Python (0.3-1.2 s for a genome of
        the default space on one CPU thread, far longer than a GPU step): the training loop asks for the next
        step's random genomes before running this step's, so their building can overlap this step where the step
        leaves Python's GIL free (a GPU's training thread waiting on a full launch queue). On the CPU the step
        holds the GIL and the overlap gained nothing (bench/supernet.py, bench/RESULTS.md). The subnets are the
        ones `subnet` would build, their statistics reset; at most `cache_size` wait."""
        for genome in genomes:
            cache_key = self._cache_key(genome)
            if cache_key in self._subnets or cache_key in self._pending:
                continue
            self.check(genome)
            self._pending[cache_key] = _builder().submit(
                _build_subnet, genome, self.joints, self.shapes, self.device, cache_key[1]
            )
            while len(self._pending) > self.cache_size:
                self._pending.popitem(last=False)

    def forget(self, genomes: Iterable[Genome]) -> None:
        """Drop the cached subnets of `genomes` (their BatchNorm statistics with them): the next run builds them."""
        for genome in genomes:
            self._subnets.pop(self._cache_key(genome), None)

    def _cache_key(self, genome: Genome) -> tuple[str, bool, str]:
        """A subnet's statistics belong to one layout and device."""
        return (genome.canonical_line(), self.channels_last, str(self.device))

    @property
    def device(self) -> torch.device:
        return next(iter(self.shared.values())).device

    @property
    def channels_last(self) -> bool:
        """Whether the conv weights are laid out channels-last (`prepare_for_training(supernet, fast=True)`)."""
        return any(
            p.dim() == CHANNELS_LAST_RANK
            and not p.is_contiguous()
            and p.is_contiguous(memory_format=torch.channels_last)
            for p in self.shared.values()
        )

    # ---- running a genome ---------------------------------------------------------------------------------
    def parameters_of(self, genome: Genome, subnet: Subnet | None = None) -> dict[str, torch.Tensor]:
        """The genome's parameters as slices of the shared tensors (differentiable views; a 4-D slice of a
        channels-last tensor is made channels-last-dense, as the fast paths expect)."""
        subnet = subnet or self.subnet(genome)
        out = {}
        for take in subnet.takes:
            tensor = self.shared[take.key][take.index]
            if subnet.fast and tensor.dim() == CHANNELS_LAST_RANK:
                tensor = tensor.contiguous(memory_format=torch.channels_last)
            out[take.name] = tensor
        return out

    def forward(self, genome: Genome, x: torch.Tensor) -> torch.Tensor:
        """The genome's heatmaps for `x`, in the supernet's mode (train: its BatchNorm uses and updates the
        subnet's own running statistics)."""
        subnet = self.subnet(genome)
        subnet.skeleton.train(self.training)
        return functional_call(subnet.skeleton, self.parameters_of(genome, subnet), (x,))

    def network(self, genome: Genome) -> GenomeNet:
        """The genome's subnet as a module that computes `self(genome, x)` (for `supernet.calibrate`)."""
        return GenomeNet(self, genome)

    @torch.no_grad()
    def load_member(self, genome: Genome, state: dict[str, torch.Tensor]) -> int:
        """Set the slices that `genome` reads to its network's `state` (a full PoseNet state dict: a checkpoint of
        the space's largest member sets every shared tensor it covers, any other member its slices), and its
        subnet's BatchNorm statistics to the state's, so that `extract(genome)` gives that network while the
        subnet stays cached. Returns the number of parameters set."""
        subnet = self.subnet(genome)
        names = {take.name for take in subnet.takes} | set(subnet.buffers())
        if set(state) != names:
            missing, extra = sorted(names - set(state)), sorted(set(state) - names)
            raise SharingError(f"the weights are not {genome.compact()}'s: missing {missing[:3]}, extra {extra[:3]}")
        for take in subnet.takes:
            self.shared[take.key][take.index] = state[take.name].to(self.shared[take.key].dtype)
        for name, buffer in subnet.buffers().items():
            buffer.copy_(state[name])
        return len(subnet.takes)

    @torch.no_grad()
    def extract(self, genome: Genome) -> PoseNet:
        """The zoo's standalone `PoseNet(genome.resolve(joints))` with copies of the shared slices, on the
        supernet's device (contiguous NCHW weights, train mode: prepare it as any fresh PoseNet). Its BatchNorm
        statistics are a copy of the subnet's where the supernet holds that subnet (it ran recently), else reset
        ones (mean 0, variance 1): calibrate it before scoring (`supernet.calibrate`)."""
        self.check(genome)
        with _OnMeta():
            model = PoseNet(genome.resolve(self.joints))
        _materialise_buffers(model, self.device)
        subnet = self._subnets.get(self._cache_key(genome))
        takes = subnet.takes if subnet is not None else _takes(genome, model, self.shapes)
        state = {t.name: self.shared[t.key][t.index].clone(memory_format=torch.contiguous_format) for t in takes}
        buffers = subnet.buffers() if subnet is not None else dict(model.named_buffers())
        state.update({name: b.clone() for name, b in buffers.items()})
        model.load_state_dict(state, strict=True, assign=True)
        return model


class GenomeNet(nn.Module):
    """One genome of a supernet as a module: `forward(x)` is `supernet(genome, x)`. The supernet and the genome's
    skeleton are its submodules, so `.train()`/`.eval()` switch the supernet and its BatchNorm layers are the
    subnet's own."""

    def __init__(self, supernet: SuperNet, genome: Genome) -> None:
        super().__init__()
        self.genome = genome
        self.supernet = supernet
        self.skeleton = supernet.subnet(genome).skeleton

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.supernet(self.genome, x)


class _OnMeta(TorchFunctionMode):
    """Tensors made without a device are made on the meta device (no memory, no values), like
    `with torch.device("meta")` but in this thread alone: that also sets the process's default device, which
    another thread (the training loop, while `prefetch` builds) would see."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _FACTORIES and kwargs.get("device") is None:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


_FACTORIES = {torch.empty, torch.zeros, torch.ones, torch.full, torch.tensor, torch.as_tensor, torch.arange}
_FACTORIES |= {torch.rand, torch.randn, torch.randint, torch.eye, torch.empty_strided, torch.linspace}


def _build_subnet(genome: Genome, joints: int, shapes: dict[str, Shape], device: torch.device, fast: bool) -> Subnet:
    """The genome's skeleton: PoseNet built on meta, real BatchNorm buffers on `device`, the dynamic kernels'
    formulation for the layout, and where each parameter is read from the shared tensors. Reads nothing the
    supernet changes, so a background thread may run it."""
    with _OnMeta():
        skeleton = PoseNet(genome.resolve(joints))
    _materialise_buffers(skeleton, device)
    prepare_for_training(skeleton, fast=fast)
    return Subnet(genome, skeleton, _takes(genome, skeleton, shapes), fast)


def _takes(genome: Genome, network: PoseNet, shapes: dict[str, Shape]) -> tuple[_Take, ...]:
    takes = []
    for name, param in network.named_parameters():
        if name not in shapes:
            raise SharingError(f"parameter {name} of genome {genome.compact()} is not in the supernet")
        takes.append(_Take(name, _key(name), slices(shapes[name], tuple(param.shape))))
    return tuple(takes)


_BUILDER: ThreadPoolExecutor | None = None


def _builder() -> ThreadPoolExecutor:
    """The process's one subnet-building thread (started at the first `prefetch`)."""
    global _BUILDER
    if _BUILDER is None:
        _BUILDER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="subnet-prefetch")
    return _BUILDER


def _materialise_buffers(module: nn.Module, device: torch.device) -> None:
    """Real buffers on `device` for a module built on meta: BatchNorm running statistics reset (mean 0, var 1)."""
    for sub in module.modules():
        if not sub._buffers:
            continue
        if not hasattr(sub, "reset_running_stats"):
            raise SharingError(f"{type(sub).__name__} has buffers the supernet does not know how to initialise")
        for name, buffer in sub._buffers.items():
            if buffer is not None:
                sub._buffers[name] = torch.empty_like(buffer, device=device)
        sub.reset_running_stats()


def _initial_values(union: SharedShapes, seed: int) -> dict[str, torch.Tensor]:
    """Each shared tensor's initial value (the rule in SuperNet's docstring); seeded, on the CPU."""
    by_part: dict[object, list[str]] = {}
    for name, origin in union.origins.items():
        by_part.setdefault(origin.part.key, []).append(name)
    values: dict[str, torch.Tensor] = {}
    with torch.random.fork_rng(devices=[]), torch.device("cpu"):
        torch.manual_seed(seed)
        for names in by_part.values():
            built = dict(union.origins[names[0]].part.build().named_parameters())
            for name in names:
                values[name] = _grown(built[union.origins[name].name].detach(), union.shapes[name])
    return {name: values[name] for name in union.shapes}


def _grown(value: torch.Tensor, shape: Shape) -> torch.Tensor:
    if tuple(value.shape) == tuple(shape):
        return value.clone()
    if value.dim() < 2:
        raise SharingError(f"a 1-D parameter of largest shape {shape} has no instance of that shape")
    grown = torch.empty(shape)
    nn.init.kaiming_uniform_(grown, a=5**0.5)
    grown[slices(shape, tuple(value.shape))] = value
    return grown
