"""The sharing rule: which tensor of the supernet a genome's parameter is, and which slice of it.

A parameter is identified by its name in `PoseNet(genome.resolve(joints))` (`stages.1.0.layers.0.depthwise_convs.
2.conv.1.0.aggregation.weight`); every genome with that name uses the same shared tensor, whose shape is the largest
(elementwise max) that the name takes over the space. A genome's tensor is a slice of it (`genome_slice`): the
leading slice along every dimension (output and input channels, the dynamic-kernel count of an aggregation weight)
except the spatial kernel dimensions of a conv weight (the last two of a rank >= 4 tensor), where it is the centred
crop (a 3x3 kernel is the centre of a shared 5x5). No gene appears here: a new gene needs no supernet code as long as
its modules keep their names when they grow or shrink.

What the names make shared (PoseNet names a module `stages.{stage}.{module}.layers...`, so each stage's first modules
and each module's first blocks have the same names in a shallower and a deeper genome):
- depth: a genome with fewer modules in a stage (or blocks in a module) uses the first modules of a deeper one;
- width: a narrower genome uses the leading channels (and, for a depthwise conv, the leading groups);
- dynamic kernels: K kernels use the first K of the shared kernels (`aggregation.weight` dim 0);
- split convs (`dsc_groups`): `depthwise_convs.{b}.conv.{i}` is always group i's (3+2i)x(3+2i) depthwise conv, so a
  genome with G groups shares groups 0..G-1 with one with more groups (same kernel size by name, fewer channels: a
  branch split in more groups gives each group fewer channels);
- a static conv (`...conv.{i}.0.weight`) and a dynamic one (`...conv.{i}.0.aggregation.weight`) have different
  names, and so do a shuffle block and a channel-weighting block, the two stems, and the context modules: they share
  nothing with each other.
BatchNorm affine parameters follow the same rule; running statistics (buffers) are never shared: each subnet keeps
its own and recalibrates them (`supernet.calibrate`).

The union over a space is computed from the parts of each genome's network (`blocks.network.network_parts`), not by
building networks: a part's parameter names and shapes depend only on its key, so each distinct part (or piece of
one) is built once on the `meta` device, and PoseNet's names are the part's place in PoseNet plus its own names.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from blocks.network import Part, PoseNet, network_parts
from blocks.spec import NetworkSpec
from search_space.genome import Genome

Shape = tuple[int, ...]
SPATIAL_RANK = 4  # a tensor of at least this rank is a conv weight whose last two dimensions are spatial


class SharingError(ValueError):
    """A space whose genomes cannot share a tensor under the rule (the message names the parameter)."""


def slices(shared_shape: Shape, shape: Shape) -> tuple[slice, ...]:
    """The index of `shape` inside a tensor of `shared_shape` under the sharing rule (see `genome_slice`)."""
    if len(shape) != len(shared_shape) or any(s > m for s, m in zip(shape, shared_shape, strict=True)):
        raise SharingError(f"shape {tuple(shape)} does not fit in the shared shape {tuple(shared_shape)}")
    index = [slice(0, s) for s in shape]
    if len(shape) >= SPATIAL_RANK:
        for d in (-2, -1):
            margin = shared_shape[d] - shape[d]
            if margin % 2:
                raise SharingError(f"kernel {shape[-2:]} cannot be centred in {shared_shape[-2:]} (odd difference)")
            index[d] = slice(margin // 2, margin // 2 + shape[d])
    return tuple(index)


def genome_slice(shared: torch.Tensor, shape: Shape) -> torch.Tensor:
    """A genome's tensor of `shape` taken from the shared tensor: the leading slice along every dimension except the
    spatial kernel dimensions (the last two of a rank >= 4 conv weight), where it is the centred crop. A view, so
    the gradient flows back into `shared` (and accumulates there over several genomes)."""
    return shared[slices(tuple(shared.shape), tuple(shape))]


def merge_shape(name: str, a: Shape, b: Shape) -> Shape:
    """The smallest shape holding both (elementwise max); tensors of different ranks cannot share a name."""
    if len(a) != len(b):
        raise SharingError(
            f"parameter {name} has rank {len(a)} {a} in one genome and rank {len(b)} {b} in another: tensors of "
            "different ranks cannot share one name; give the modules different names"
        )
    return tuple(max(x, y) for x, y in zip(a, b, strict=True))


@dataclass(frozen=True)
class Origin:
    """Where a parameter comes from: a leaf part (one that is built, not assembled from pieces) and its own name
    in that part's module, so that it can be built (and initialised) alone."""

    part: Part
    name: str


# A part's parameters: own name -> (shape, origin).
PartParameters = dict[str, tuple[Shape, Origin]]


def _build_meta(part: Part) -> nn.Module:
    with torch.device("meta"):
        return part.build()


def _stand_ins(count: int) -> list[nn.Module]:
    return [nn.Module() for _ in range(count)]


def _prefixes(container: nn.Module, stand_ins: list[nn.Module], what: str) -> list[str]:
    """The name of each stand-in inside `container` (each must appear exactly once)."""
    found = {id(m): name for name, m in container.named_modules(remove_duplicate=False) if m is not None}
    missing = [i for i, m in enumerate(stand_ins) if id(m) not in found]
    if missing:
        raise SharingError(f"{what}: module {missing[0]} of its parts is not kept in the network, so it has no name")
    return [found[id(m)] for m in stand_ins]


_PART_MEMO: dict[object, PartParameters] = {}


def part_parameters(part: Part) -> PartParameters:
    """The parameters of `part`'s module (names relative to it), memoised on the part's key. A part assembled from
    pieces is never built: its pieces are (each once), and its assembly is run on stand-ins to learn where it keeps
    each piece."""
    found = _PART_MEMO.get(part.key)
    if found is not None:
        return found
    if part.pieces:
        if part.assemble is None:
            raise SharingError(f"part {part.key!r} has pieces but no assemble function")
        stand_ins = _stand_ins(len(part.pieces))
        prefixes = _prefixes(part.assemble(stand_ins), stand_ins, f"part {part.key!r}")
        found = {
            f"{prefix}.{name}": entry
            for prefix, piece in zip(prefixes, part.pieces, strict=True)
            for name, entry in part_parameters(piece).items()
        }
    else:
        found = {name: (tuple(p.shape), Origin(part, name)) for name, p in _build_meta(part).named_parameters()}
    _PART_MEMO[part.key] = found
    return found


def _place_prefixes(spec_places: tuple[str, ...], spec: NetworkSpec) -> tuple[str, ...]:
    """Where PoseNet puts each part (`stem`, `stages.1.0.layers`, ...), for networks whose parts have these places
    (learned from PoseNet itself, given stand-ins for its parts)."""
    stand_ins = _stand_ins(len(spec_places))
    return tuple(_prefixes(PoseNet(spec, stand_ins), stand_ins, "PoseNet"))


_PREFIX_MEMO: dict[tuple[str, ...], tuple[str, ...]] = {}


def placed_parts(spec: NetworkSpec) -> list[tuple[str, Part]]:
    """The parts of PoseNet(spec) with the name prefix PoseNet gives each (memoised on the sequence of places)."""
    parts = network_parts(spec)
    places = tuple(p.place for p in parts)
    prefixes = _PREFIX_MEMO.get(places)
    if prefixes is None:
        prefixes = _PREFIX_MEMO[places] = _place_prefixes(places, spec)
    return list(zip(prefixes, parts, strict=True))


def parameter_shapes(spec: NetworkSpec) -> dict[str, Shape]:
    """Name -> shape of every parameter of PoseNet(spec), without building it."""
    return {
        f"{prefix}.{name}": shape
        for prefix, part in placed_parts(spec)
        for name, (shape, _) in part_parameters(part).items()
    }


@dataclass(frozen=True)
class SharedShapes:
    """The union of a space's parameters: each name's largest shape, and the origin of its largest instance (the
    leaf part with the most elements for that name, which the supernet's initialisation builds)."""

    shapes: dict[str, Shape]
    origins: dict[str, Origin]


def shared_shapes(genomes: Iterable[Genome], joints: int = 17) -> SharedShapes:
    """The largest shape of every parameter name over `genomes` (elementwise max; a rank mismatch is a
    SharingError naming the parameter). Each distinct (place, part) is merged once."""
    placed: dict[tuple[str, object], tuple[str, Part]] = {}
    for genome in genomes:
        for prefix, part in placed_parts(genome.resolve(joints)):
            placed.setdefault((prefix, part.key), (prefix, part))
    shapes: dict[str, Shape] = {}
    origins: dict[str, tuple[int, Origin]] = {}
    for prefix, part in placed.values():
        for own, (shape, origin) in part_parameters(part).items():
            name = f"{prefix}.{own}"
            shapes[name] = merge_shape(name, shapes[name], shape) if name in shapes else shape
            size = _numel(shape)
            if name not in origins or size > origins[name][0]:
                origins[name] = (size, origin)
    ordered = sorted(shapes)
    return SharedShapes({n: shapes[n] for n in ordered}, {n: origins[n][1] for n in ordered})


def _numel(shape: Shape) -> int:
    size = 1
    for s in shape:
        size *= s
    return size
