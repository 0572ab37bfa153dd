"""Where a training run computes and in which precision, resolved once from the user's words.

`resolve_device("auto", "auto")` is the CPU in float32 on a machine without CUDA (the numbers of every CPU run are
unchanged), and CUDA with bfloat16 autocast where the GPU computes it natively (compute capability 8.0 and up),
float16 autocast with loss scaling elsewhere. Every impossible choice is a ValueError that says what to use instead,
raised before any data is loaded.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

import torch

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
# --amp word -> autocast dtype (None: full float32).
AMP_DTYPES: dict[str, torch.dtype | None] = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}
AMPS = ("auto", *AMP_DTYPES)


@dataclass(frozen=True)
class Device:
    """A resolved device and autocast dtype (None: no autocast)."""

    device: torch.device
    amp: torch.dtype | None = None

    @property
    def fast(self) -> bool:
        """The CPU fast paths (channels-last, fast dynamic kernels, malloc tuning) are tuned for, and used on, CPU;
        elsewhere the reference formulation, which is correct on every device."""
        return self.device.type == "cpu"

    @property
    def amp_name(self) -> str:
        return next(name for name, dtype in AMP_DTYPES.items() if dtype == self.amp)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast around forward and loss when AMP is on; a no-op context otherwise."""
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling, enabled for float16 only (bfloat16 has float32's range and needs none)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)

    def activate(self) -> None:
        """Make a CUDA device the process's current one (with `cuda:1`, autocast, new CUDA tensors and memory figures
        that name no index would otherwise use cuda:0), and let cuDNN pick its fastest convolution algorithms: a
        training's input size is fixed, so the search at the first step pays off at every later one."""
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cudnn.benchmark = True

    def memory_record(self) -> dict[str, float]:
        """Peak memory the run has allocated on a CUDA device, in MiB (what to size --batch and --gpus-per-trial
        by); empty elsewhere."""
        if self.device.type != "cuda":
            return {}
        return {"gpu_peak_mib": torch.cuda.max_memory_allocated(self.device) / 2**20}

    def describe(self) -> str:
        return f"{self.device} ({'float32' if self.amp is None else self.amp_name + ' autocast'})"


CPU = Device(torch.device("cpu"))


def _torch_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError("--device mps: this machine has no MPS (Apple GPU) backend; use --device cpu")
        return torch.device("mps")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match is None:
        raise ValueError(f"--device {name!r} is not a device; choose one of {', '.join(DEVICES)}")
    if not torch.cuda.is_available():
        raise ValueError(
            f"--device {name}: this machine has no CUDA device (or torch is built without CUDA); use --device cpu"
        )
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise ValueError(
            f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), "
            f"cuda:0 to cuda:{torch.cuda.device_count() - 1}"
        )
    return torch.device("cuda", index)


# bfloat16 is computed natively from compute capability 8.0 (Ampere) on; older GPUs emulate it slowly, if at all.
NATIVE_BF16 = (8, 0)


def native_bf16(device: torch.device) -> bool:
    """Whether the CUDA `device` computes bfloat16 natively (torch.cuda.is_bf16_supported also counts emulation)."""
    return torch.cuda.get_device_capability(device) >= NATIVE_BF16


def _amp_dtype(name: str, device: torch.device) -> torch.dtype | None:
    if name not in AMPS:
        raise ValueError(f"--amp {name!r} is not a precision; choose one of {', '.join(AMPS)}")
    if name == "auto":  # the CPU's numbers stay float32; a GPU gets bfloat16, or float16 with loss scaling
        if device.type != "cuda":
            return None
        return torch.bfloat16 if native_bf16(device) else torch.float16
    dtype = AMP_DTYPES[name]
    if dtype is None:
        return None
    if device.type == "mps":
        raise ValueError(f"--amp {name} on mps is not supported here; use --amp off")
    if device.type == "cpu" and dtype == torch.float16:
        raise ValueError(
            "--amp fp16 needs a CUDA device (float16 autocast on CPU is slow and unscaled); use bf16 or off"
        )
    if device.type == "cuda" and dtype == torch.bfloat16 and not native_bf16(device):
        major, minor = torch.cuda.get_device_capability(device)
        raise ValueError(
            f"--amp bf16: {device} (compute capability {major}.{minor}) does not compute bfloat16 natively (8.0 and "
            "up do); use --amp fp16 (with loss scaling) or auto"
        )
    return dtype


def planned_device(device: str, amp: str) -> Device:
    """The device kind a data-parallel job's workers will train on, decided where the job starts, whose machine
    may have no GPU (a cluster's head): `cuda` is not checked here and the precision is left to each worker
    (`resolve_device` on the GPU Ray gives it, `amp` None here). Syntax and impossible pairs are still errors."""
    if device not in ("auto", "cpu", "cuda"):
        _torch_device(device)  # the error for a word that is not a device (or cuda:N, mps, refused by the job)
        return Device(torch.device(device))
    if amp not in AMPS:
        raise ValueError(f"--amp {amp!r} is not a precision; choose one of {', '.join(AMPS)}")
    kind = "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"
    if kind == "cpu":
        return Device(torch.device("cpu"), _amp_dtype(amp, torch.device("cpu")))
    return Device(torch.device("cuda"))


def resolve_device(device: str = "auto", amp: str = "auto") -> Device:
    """The Device for --device and --amp, or a ValueError naming the impossible choice and what to use instead."""
    where = _torch_device(device)
    return Device(where, _amp_dtype(amp, where))
