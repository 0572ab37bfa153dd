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

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from blocks.context import DenseContextModeling, GlobalContextModeling
from blocks.dynamic import KernelAggregation

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
        {nn.Conv2d: _conv_macs, KernelAggregation: _conv_macs, nn.Linear: _linear_macs},
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
        },
        leaf_only=False,
        last_call_only=False,
        unit="MMACs",
        divisor=2**20,
        description="true multiply-accumulates of every conv/linear/matmul, every call, no bias or norm",
    ),
}


def register_rule(module_type: type, formulas: dict[str, Formula]) -> None:
    """Count `module_type` by `formulas` (convention name -> formula); a gene's new module brings its own rule."""
    for name, formula in formulas.items():
        convention(name).formulas[module_type] = formula


def convention(name: str) -> Convention:
    if name not in CONVENTIONS:
        raise ValueError(f"unknown FLOPs convention {name!r}; choose one of {', '.join(CONVENTIONS)}")
    return CONVENTIONS[name]


def _formula(conv: Convention, module: nn.Module) -> Formula | None:
    for kind, formula in conv.formulas.items():
        if isinstance(module, kind):
            return formula
    return None


def _shape_only_batch_norm(self: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    return x


@dataclass(frozen=True)
class Complexity:
    params: int
    flops: dict[str, int]
    torchstat_params: int
    input_hw: tuple[int, int]
    output_shape: tuple[int, ...]


def measure(model_factory: Callable[[], nn.Module], input_hw: tuple[int, int] = (256, 192)) -> Complexity:
    """Build the model on the meta device, run one batch-1 forward in eval mode, count every convention."""
    with torch.device("meta"):
        model = model_factory().eval()
    leaves = {m for m in model.modules() if not list(m.children())}
    last: dict[str, dict[nn.Module, int]] = {name: {} for name in CONVENTIONS}
    total: dict[str, int] = dict.fromkeys(CONVENTIONS, 0)
    executed: set[nn.Module] = set()

    def hook(module: nn.Module, args: tuple, out) -> None:
        if module in leaves:
            executed.add(module)
        for name, conv in CONVENTIONS.items():
            if conv.leaf_only and module not in leaves:
                continue
            formula = _formula(conv, module)
            if formula is None:
                continue
            value = int(formula(module, args, out))
            if conv.last_call_only:
                last[name][module] = value
            else:
                total[name] += value

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    batch_norm_forward = nn.BatchNorm2d.forward
    try:
        # BatchNorm keeps the shape, and the meta-device decomposition of batch_norm is most of the cost.
        nn.BatchNorm2d.forward = _shape_only_batch_norm
        with torch.no_grad():
            output = model(torch.empty(1, 3, *input_hw, device="meta"))
    finally:
        nn.BatchNorm2d.forward = batch_norm_forward
        for h in handles:
            h.remove()
    flops = {
        name: (sum(last[name].values()) if conv.last_call_only else total[name]) for name, conv in CONVENTIONS.items()
    }
    params = sum(p.numel() for p in model.parameters())
    torchstat_params = sum(p.numel() for m in executed for p in m.parameters(recurse=False))
    return Complexity(params, flops, torchstat_params, tuple(input_hw), tuple(output.shape))


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
    """Complexity of a genome at an input size (H, W divisible by 32) and joint count."""
    from blocks.network import PoseNet

    check_input_size(input_hw)
    spec = genome.resolve(joints)
    return measure(lambda: PoseNet(spec), input_hw)


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
