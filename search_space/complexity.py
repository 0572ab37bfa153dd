"""Exact parameter counts and FLOPs of a built network in named conventions.

Counting runs one forward pass on the `meta` device (shapes only, no arithmetic), with forward hooks whose
formulas are looked up per module type in a table for each convention (NNI's profiler idea):

- `torchstat`: the rules of the bundled torchstat used by Lite-HRNet and Dite-HRNet. Leaf modules only; each
  module keeps the stats of its last call; conv k*k*Cin*Cout/groups*Hout*Wout (+Cout*Hout*Wout for a bias),
  BatchNorm 2*numel, ReLU numel, AdaptiveAvgPool (window_h+1)*(window_w+1) per output cell, Upsample Hout*Wout,
  everything functional 0. Papers print raw / 2^20 as "M".
- `conv-macs`: HRNet's rule: multiply-accumulates of every Conv2d / Linear on every call, no bias. Papers print
  raw / 2^30 as "G".
- `macs`: true multiply-accumulates of every conv, linear and matmul on every call (including the kernel mixing
  of dynamic convs and the attention pooling of context modules), no bias, no normalisation.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import blocks
from blocks.context import DenseContextModeling, GlobalContextModeling
from blocks.dynamic import KernelAggregation
from blocks.network import Part, network_parts
from blocks.spec import NetworkSpec

Formula = Callable[[nn.Module, tuple, torch.Tensor], int]


def _conv_macs(module: nn.Module, args: tuple, out: torch.Tensor) -> int:
    kh, kw = (module.kernel_size, module.kernel_size) if isinstance(module.kernel_size, int) else module.kernel_size
    batch, in_c = args[0].shape[:2]
    out_c, out_h, out_w = out.shape[1:]
    return kh * kw * in_c * (out_c // module.groups) * batch * out_h * out_w


def _conv_with_bias(module: nn.Module, args: tuple, out: torch.Tensor) -> int:
    bias = out.numel() if module.bias is not None else 0
    return _conv_macs(module, args, out) + bias


def _linear_macs(module: nn.Module, args: tuple, out: torch.Tensor) -> int:
    return out.numel() * module.in_features


def _adaptive_pool(module: nn.Module, args: tuple, out: torch.Tensor) -> int:
    batch, channels, height, width = args[0].shape
    out_h, out_w = out.shape[-2:]
    total = 0
    for i in range(out_h):
        rows = math.ceil((i + 1) * height / out_h) - math.floor(i * height / out_h)
        for j in range(out_w):
            cols = math.ceil((j + 1) * width / out_w) - math.floor(j * width / out_w)
            total += batch * channels * (rows + 1) * (cols + 1)
    return total


def _dynamic_conv_macs(module: KernelAggregation, args: tuple, out: torch.Tensor) -> int:
    mixing = args[0].shape[0] * module.weight.numel()
    return _conv_macs(module, args, out) + mixing


def _dense_context_macs(module: nn.Module, args: tuple, out) -> int:
    return sum(s.numel() for s in args[0][:-1])


def _global_context_macs(module: nn.Module, args: tuple, out) -> int:
    return args[0].numel()


def _free(module: nn.Module, args: tuple, out) -> int:
    """A module that costs nothing in a convention (said explicitly, so that a missing rule is an error)."""
    return 0


@dataclass(frozen=True)
class Convention:
    name: str
    formulas: dict[type, Formula]
    leaf_only: bool
    last_call_only: bool
    unit: str
    divisor: int
    description: str


CONVENTIONS: dict[str, Convention] = {
    "torchstat": Convention(
        "torchstat",
        {
            nn.Conv2d: _conv_with_bias,
            KernelAggregation: _conv_with_bias,
            nn.BatchNorm2d: lambda m, a, o: 2 * a[0].numel(),
            nn.ReLU: lambda m, a, o: a[0].numel(),
            nn.AdaptiveAvgPool2d: _adaptive_pool,
            nn.Upsample: lambda m, a, o: o.shape[0] * o.shape[-2] * o.shape[-1],
            nn.Linear: _linear_macs,
        },
        leaf_only=True,
        last_call_only=True,
        unit="MFLOPs",
        divisor=2**20,
        description="Lite-HRNet/Dite-HRNet torchstat rules; printed as raw / 2^20 M",
    ),
    "conv-macs": Convention(
        "conv-macs",
        {nn.Conv2d: _conv_macs, KernelAggregation: _conv_macs, nn.Linear: _linear_macs, nn.BatchNorm2d: _free},
        leaf_only=True,
        last_call_only=False,
        unit="GFLOPs",
        divisor=2**30,
        description="HRNet rule: conv/linear multiply-accumulates, every call, no bias; printed as raw / 2^30 G",
    ),
    "macs": Convention(
        "macs",
        {
            nn.Conv2d: _conv_macs,
            KernelAggregation: _dynamic_conv_macs,
            nn.Linear: _linear_macs,
            DenseContextModeling: _dense_context_macs,
            GlobalContextModeling: _global_context_macs,
            nn.BatchNorm2d: _free,
        },
        leaf_only=False,
        last_call_only=False,
        unit="MMACs",
        divisor=2**20,
        description="true multiply-accumulates of every conv/linear/matmul, every call, no bias or norm",
    ),
}

# Modules that multiply (convolutions, linear maps, attention, recurrences): each needs a rule in every convention,
# with or without parameters of its own, leaf or not. So does every leaf module with parameters.
COMPUTE_TYPES: tuple[type, ...] = (
    nn.modules.conv._ConvNd,
    nn.Linear,
    nn.Bilinear,
    nn.MultiheadAttention,
    nn.RNNBase,
    nn.RNNCellBase,
)


class NoCountingRule(TypeError):
    """A module that must be counted has no rule in a convention; counting it as 0 would let it pass any budget."""


def register_rule(module_type: type, formulas: dict[str, Formula]) -> None:
    """Count `module_type` by `formulas` (convention name -> formula); a gene's new module brings its own rule."""
    for name, formula in formulas.items():
        convention(name).formulas[module_type] = formula
    forget_counts()


def forget_counts() -> None:
    """Empty the in-process memo of part counts (done whenever a rule changes)."""
    _PART_COSTS.clear()


def convention(name: str) -> Convention:
    if name not in CONVENTIONS:
        raise ValueError(f"unknown FLOPs convention {name!r}; choose one of {', '.join(CONVENTIONS)}")
    return CONVENTIONS[name]


def _formula(conv: Convention, module: nn.Module) -> Formula | None:
    for kind, formula in conv.formulas.items():
        if isinstance(module, kind):
            return formula
    return None


def _missing_rule(module: nn.Module, convention_name: str) -> NoCountingRule:
    kind = type(module)
    return NoCountingRule(
        f"no {convention_name!r} counting rule for module type {kind.__module__}.{kind.__qualname__}: it has "
        "parameters or multiplies, so counting it as 0 FLOPs would be wrong; register one with "
        f"search_space.complexity.register_rule({kind.__qualname__}, "
        '{"torchstat": f, "conv-macs": f, "macs": f}), where f(module, args, output) -> int '
        "(a rule returning 0 where the module is free in a convention)"
    )


def _shape_only_batch_norm(self: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    return x


@dataclass(frozen=True)
class Complexity:
    params: int
    flops: dict[str, int]
    torchstat_params: int
    input_hw: tuple[int, int]
    output_shape: tuple[int, ...]


@dataclass(frozen=True)
class _Count:
    """What one forward of one module (a network or a part of it) costs, and the shape(s) of its output."""

    flops: dict[str, int]
    params: int
    torchstat_params: int
    output: Shapes


# A tensor's shape, or the shapes of a list of tensors (the branches between the parts of a network).
Shapes = tuple[int, ...] | tuple[tuple[int, ...], ...]


def _shapes(x: torch.Tensor | list[torch.Tensor]) -> Shapes:
    return tuple(x.shape) if isinstance(x, torch.Tensor) else tuple(tuple(t.shape) for t in x)


def zeros_of(shapes: Shapes, device: str = "cpu") -> torch.Tensor | list[torch.Tensor]:
    """Zero tensors of a part's input shapes: one tensor, or a list of one per branch."""
    if shapes and isinstance(shapes[0], tuple):
        return [torch.zeros(s, device=device) for s in shapes]
    return torch.zeros(shapes, device=device)


def _count(model: nn.Module, inputs: Shapes, run: Callable[[nn.Module, Any], Any], device: str) -> _Count:
    """Run `run(model, x)` once on zero tensors of shapes `inputs` on `device` (the model's), in eval mode, with
    every convention's hooks. The figures depend on shapes only, never on values or device."""
    model.eval()
    modules = list(model.modules())
    leaves = {m for m in modules if all(c is None for c in m._modules.values())}
    owns_parameters = {m for m in leaves if any(p is not None for p in m._parameters.values())}
    must_count = owns_parameters | {m for m in modules if isinstance(m, COMPUTE_TYPES)}
    last: dict[str, dict[nn.Module, int]] = {name: {} for name in CONVENTIONS}
    total: dict[str, int] = dict.fromkeys(CONVENTIONS, 0)
    executed: set[nn.Module] = set()

    def hook(module: nn.Module, args: tuple, out) -> None:
        if module in leaves:
            executed.add(module)
        for name, conv in CONVENTIONS.items():
            formula = _formula(conv, module)
            if formula is None:
                if module in must_count:
                    raise _missing_rule(module, name)
                continue
            if conv.leaf_only and module not in leaves and module not in must_count:
                continue
            value = int(formula(module, args, out))
            if conv.last_call_only:
                last[name][module] = value
            else:
                total[name] += value

    handles = [m.register_forward_hook(hook) for m in modules]
    batch_norm_forward = nn.BatchNorm2d.forward
    try:
        # BatchNorm keeps the shape, and the meta-device decomposition of batch_norm is most of the cost.
        nn.BatchNorm2d.forward = _shape_only_batch_norm
        with torch.no_grad():
            output = run(model, zeros_of(inputs, device))
    finally:
        nn.BatchNorm2d.forward = batch_norm_forward
        for h in handles:
            h.remove()
    flops = {
        name: (sum(last[name].values()) if conv.last_call_only else total[name]) for name, conv in CONVENTIONS.items()
    }
    params = sum(p.numel() for p in model.parameters())
    torchstat_params = sum(p.numel() for m in executed for p in m.parameters(recurse=False))
    return _Count(flops, params, torchstat_params, _shapes(output))


def _call(module: nn.Module, x: Any) -> Any:
    return module(x)


def measure(model_factory: Callable[[], nn.Module], input_hw: tuple[int, int] = (256, 192)) -> Complexity:
    """Build the whole model on the meta device, run one batch-1 forward in eval mode, count every convention.

    The reference count; `spec_complexity` gives the same figures as a sum of memoised parts.
    """
    with torch.device("meta"):
        model = model_factory()
    count = _count(model, (1, 3, *input_hw), _call, "meta")
    return Complexity(count.params, count.flops, count.torchstat_params, tuple(input_hw), count.output)


# (part key, input shapes) -> its count; emptied when a rule changes (register_rule).
_PART_COSTS: dict[tuple[Hashable, Shapes], _Count] = {}


def _part_cost(part: Part, inputs: Shapes) -> _Count:
    key = (part.key, inputs)
    cost = _PART_COSTS.get(key)
    if cost is None:
        cost = _PART_COSTS[key] = _sum_of_parts(part.pieces, inputs) if part.pieces else _count_part(part, inputs)
    return cost


def _count_part(part: Part, inputs: Shapes) -> _Count:
    # One part at batch 1 runs faster on one CPU thread than on the meta device (whose elementwise ops are Python
    # decompositions); its random initialisation must not move the caller's random stream. (A device context
    # would intercept every torch call: only where the default device is not the CPU.)
    on_cpu = torch.device("cpu") if torch.get_default_device().type != "cpu" else contextlib.nullcontext()
    with torch.random.fork_rng(devices=[]), on_cpu, _one_thread():
        return _count(part.build(), inputs, part.run, "cpu")


def _sum_of_parts(parts: Sequence[Part], inputs: Shapes) -> _Count:
    """The cost of `parts` run one after the other on inputs of shapes `inputs`, each counted once per process; a
    part with a `branch` runs on that branch of the branches alone."""
    flops = dict.fromkeys(CONVENTIONS, 0)
    params = torchstat_params = 0
    shapes = inputs
    for part in parts:
        if part.branch is None:
            cost = _part_cost(part, shapes)
            shapes = cost.output
        else:
            cost = _part_cost(part, shapes[part.branch])
            shapes = (*shapes[: part.branch], cost.output, *shapes[part.branch + 1 :])
        for name, value in cost.flops.items():
            flops[name] += value
        params += cost.params
        torchstat_params += cost.torchstat_params
    return _Count(flops, params, torchstat_params, shapes)


def leaf_inputs(spec: NetworkSpec, input_shape: tuple[int, ...]) -> list[tuple[Part, Shapes]]:
    """Every part of PoseNet(spec) that is not made of pieces (stem, transitions, each branch's blocks and context
    modules, fuses, heads), in run order, with the shapes it runs on (outputs from the memoised counts): what a
    per-part latency table looks up. The whole default space is made of a few hundred distinct ones."""
    placed: list[tuple[Part, Shapes]] = []
    _place(network_parts(spec), tuple(input_shape), placed)
    return placed


def _place(parts: Sequence[Part], shapes: Shapes, placed: list[tuple[Part, Shapes]]) -> Shapes:
    for part in parts:
        inputs = shapes if part.branch is None else shapes[part.branch]
        if part.pieces:
            _place(part.pieces, inputs, placed)
        else:
            placed.append((part, inputs))
        output = _part_cost(part, inputs).output
        shapes = output if part.branch is None else (*shapes[: part.branch], output, *shapes[part.branch + 1 :])
    return shapes


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Tiny batch-1 ops: several threads only contend (10x slower on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def spec_complexity(spec: NetworkSpec, input_hw: tuple[int, int] = (256, 192)) -> Complexity:
    """The complexity of PoseNet(spec) as the sum of its parts (`blocks.network.network_parts`), each counted once
    per (part, input shapes) in this process (NNI's profiler idea). Equal to `measure` in every figure: the parts
    own disjoint modules and parameters, each module's calls all happen inside its own part, and a part made of
    pieces (`blocks.network.assembled`) adds nothing to them, each piece running on the shapes it sees in the part."""
    count = _sum_of_parts(network_parts(spec), (1, 3, *input_hw))
    return Complexity(count.params, count.flops, count.torchstat_params, tuple(input_hw), count.output)


# The source that decides a genome's complexity: the modules (`blocks`), and the genes, their resolution into a
# spec and the counting rules (`search_space`). A cache of counts is valid only for the same bytes of these files.
COMPLEXITY_SOURCES: tuple[Path, ...] = (Path(blocks.__file__).parent, Path(__file__).parent)


def source_hash(roots: Sequence[Path]) -> str:
    """sha1 over the path (relative to its root's parent) and bytes of every .py file under `roots`, sorted."""
    digest = hashlib.sha1()
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            digest.update(f"{root.name}/{path.relative_to(root).as_posix()}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@functools.cache
def complexity_code_hash() -> str:
    """`source_hash(COMPLEXITY_SOURCES)`, read once per process."""
    return source_hash(COMPLEXITY_SOURCES)


def _rule_identity(formula: Formula) -> str:
    code = getattr(formula, "__code__", None)
    body = repr((code.co_code, code.co_consts, code.co_names)) if code is not None else ""
    return f"{getattr(formula, '__module__', '')}.{getattr(formula, '__qualname__', repr(formula))}:{body}"


def counting_fingerprint() -> str:
    """What a cached count depends on besides the genome and the input: the code hash and the convention set
    (every convention's rules, including rules registered at run time, by their code)."""
    rules = hashlib.sha1()
    for name in sorted(CONVENTIONS):
        conv = CONVENTIONS[name]
        rules.update(f"{name}|{conv.leaf_only}|{conv.last_call_only}".encode())
        for kind, formula in conv.formulas.items():
            rules.update(f"|{kind.__module__}.{kind.__qualname__}={_rule_identity(formula)}".encode())
    return f"{complexity_code_hash()[:16]}-{rules.hexdigest()[:16]}"


def format_flops(raw: int, name: str, truncate: bool = False) -> str:
    """The figure as the papers print it: one decimal of raw / 2^30 ("G") from 1 G up, else raw / 2^20 ("M").

    Lite-HRNet rounds, Dite-HRNet truncates (`truncate=True`); the convention only decides what `raw` counts.
    """
    convention(name)
    unit, divisor = ("G", 2**30) if raw >= 2**30 else ("M", 2**20)
    return f"{_one_decimal(raw / divisor, truncate):.1f}{unit}"


def _one_decimal(value: float, truncate: bool) -> float:
    return math.floor(value * 10 + 1e-9) / 10 if truncate else round(value, 1)


def format_params(params: int, truncate: bool = False) -> str:
    """#Params as the papers print them: decimal millions, one decimal."""
    return f"{_one_decimal(params / 1e6, truncate):.1f}M"


def genome_complexity(genome, input_hw: tuple[int, int] = (256, 192), joints: int = 17) -> Complexity:
    """Complexity of a genome at an input size (H, W divisible by 32) and joint count (memoised parts)."""
    check_input_size(input_hw)
    return spec_complexity(genome.resolve(joints), input_hw)


def check_input_size(input_hw: tuple[int, int]) -> None:
    height, width = input_hw
    if height <= 0 or width <= 0 or height % 32 or width % 32:
        raise ValueError(
            f"input {height}x{width}: height and width must be positive multiples of 32 "
            "(the network halves the resolution five times), e.g. 256x192 or 128x96"
        )


def parse_input_size(text: str) -> tuple[int, int]:
    """`256x192` (HxW) -> (256, 192), checked."""
    parts = str(text).lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"input size {text!r}: write HxW, e.g. 256x192")
    size = (int(parts[0]), int(parts[1]))
    check_input_size(size)
    return size
