"""Latency: how long a network's inference takes on a named runtime and device, measured, not inferred from FLOPs.

A `Setting` names what is timed (onnxruntime or PyTorch, CPU or CUDA, batch, threads, input size); `runner` turns
a module into a zero-argument call that runs one inference that way; `time_interleaved` times several such calls
in alternating rounds (a shared machine's load then falls on all of them alike) after a warm-up; `measure_latency`
is all three for one genome. Figures are in milliseconds: the median of every timed run, and its interquartile
range as the spread.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from blocks.fusion import fold_batch_norms
from blocks.network import PoseNet, prepare_for_training, prepare_input
from blocks.onnx_export import INPUT_NAME, export_onnx, exporter_warnings_silenced
from search_space.genome import Genome

RUNTIMES = ("ort", "torch")  # onnxruntime on the exported ONNX file; PyTorch eager, BatchNorm folded
DEVICES = ("cpu", "cuda")
ORT_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


class LatencyError(ValueError):
    """A latency setting that cannot be measured here; the message says what is wrong and how to fix it."""


@dataclass(frozen=True)
class Setting:
    """How a latency is measured: the runtime, the device, the batch, the threads and the input size."""

    runtime: str = "ort"
    device: str = "cpu"
    batch: int = 1
    threads: int = 1
    input_hw: tuple[int, int] = (256, 192)

    def describe(self) -> str:
        threads = f", {self.threads} thread{'s' if self.threads > 1 else ''}" if self.device == "cpu" else ""
        return f"{self.runtime} on {self.device}, batch {self.batch}{threads}, {self.input_hw[0]}x{self.input_hw[1]}"

    def key(self) -> str:
        """A file-name-safe name of the setting (latency tables are cached per setting)."""
        h, w = self.input_hw
        return f"{self.runtime}-{self.device}-b{self.batch}-t{self.threads}-{h}x{w}"

    def as_config(self) -> dict:
        """JSON-friendly (a trial's config); `Setting.from_config` reads it back."""
        return {**asdict(self), "input_hw": list(self.input_hw)}

    @classmethod
    def from_config(cls, config: dict) -> Setting:
        return cls(**{**config, "input_hw": tuple(config["input_hw"])})

    def tags(self) -> dict[str, str]:
        return {
            f"latency_{k}": "x".join(map(str, v)) if isinstance(v, tuple) else str(v) for k, v in asdict(self).items()
        }


def parse_setting(
    runtime: str = "ort",
    device: str = "cpu",
    batch: int = 1,
    threads: int = 1,
    input_hw: tuple[int, int] = (256, 192),
    local: bool = True,
) -> Setting:
    """A setting checked against this machine: a known runtime, a device it has, at least one image and thread.
    `local` False: the measuring happens on a cluster's nodes, whose GPUs and runtimes this machine cannot check
    (each measurement checks its own: `check_provider`)."""
    if runtime not in RUNTIMES:
        raise LatencyError(f"--runtime {runtime!r}: choose one of {', '.join(RUNTIMES)} (ort: onnxruntime)")
    if device not in DEVICES:
        raise LatencyError(f"--device {device!r}: choose one of {', '.join(DEVICES)}")
    if batch < 1 or threads < 1:
        raise LatencyError(f"--batch {batch} --threads {threads}: both must be at least 1")
    if device == "cuda" and local:
        if not torch.cuda.is_available():
            raise LatencyError(
                "--device cuda: this machine has no CUDA device (or torch is built without CUDA); measure with "
                "--device cpu, or on a machine with a GPU"
            )
        if runtime == "ort":
            import onnxruntime

            if ORT_PROVIDERS["cuda"] not in onnxruntime.get_available_providers():
                raise LatencyError(
                    "--runtime ort --device cuda: this onnxruntime has no CUDAExecutionProvider; install "
                    "onnxruntime-gpu, or measure with --runtime torch"
                )
    return Setting(runtime, device, batch, threads, tuple(input_hw))


@dataclass(frozen=True)
class Latency:
    """One measured latency: the median and the interquartile range of `runs` timed inferences, in ms."""

    median_ms: float
    p25_ms: float
    p75_ms: float
    runs: int
    setting: Setting

    @property
    def spread_ms(self) -> float:
        return self.p75_ms - self.p25_ms

    @property
    def relative_spread(self) -> float:
        """The interquartile range over the median: how much one run varies."""
        return self.spread_ms / self.median_ms if self.median_ms else 0.0

    def as_dict(self) -> dict:
        return {
            "latency_ms": self.median_ms,
            "latency_p25_ms": self.p25_ms,
            "latency_p75_ms": self.p75_ms,
            "latency_spread_ms": self.spread_ms,
            "latency_runs": self.runs,
            **asdict(self.setting),
        }


def of_samples(samples: list[float], setting: Setting) -> Latency:
    """The Latency of timed runs (seconds each)."""
    ms = sorted(s * 1000 for s in samples)
    quartiles = statistics.quantiles(ms, n=4) if len(ms) > 1 else [ms[0]] * 3
    return Latency(statistics.median(ms), quartiles[0], quartiles[2], len(ms), setting)


# ---- runners ------------------------------------------------------------------------------------------------------
Inference = Callable[[], object]


def _torch_runner(model: nn.Module, example: tuple[torch.Tensor, ...], setting: Setting, _: Path) -> Inference:
    """PyTorch eager as hrnas scores: eval mode, BatchNorm folded, the CPU fast paths on CPU."""
    fast = setting.device == "cpu"
    model = fold_batch_norms(prepare_for_training(model, fast=fast).eval()).to(setting.device)
    inputs = tuple(prepare_input(x, fast=fast).to(setting.device) if x.dim() == 4 else x for x in example)
    synchronize = torch.cuda.synchronize if setting.device == "cuda" else (lambda: None)

    def run() -> object:
        torch.set_num_threads(setting.threads)
        with torch.inference_mode():
            out = model(*inputs)
        synchronize()
        return out

    return run


def _ort_runner(model: nn.Module, example: tuple[torch.Tensor, ...], setting: Setting, folder: Path) -> Inference:
    """onnxruntime on the network exported as `hrnas export` writes it, all graph optimisations on, sequential."""
    import onnxruntime

    path = folder / "model.onnx"
    names = export_any(model.eval(), example, path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = setting.threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(path), options, providers=[ORT_PROVIDERS[setting.device]])
    check_provider(session.get_providers(), setting.device)
    feed = {name: x.numpy().astype(np.float32) for name, x in zip(names, example, strict=True)}
    if setting.device == "cpu":
        return lambda: session.run(None, feed)
    return bound_run(session, feed, setting.device)


def check_provider(providers: list[str], device: str) -> None:
    """An error unless onnxruntime really runs on `device`: a CUDA session whose provider failed to load (a CUDA or
    cuDNN library missing or of another version) falls back to the CPU silently, and would time the CPU."""
    if providers[0] != ORT_PROVIDERS[device]:
        raise LatencyError(
            f"--device {device}: onnxruntime runs this network on {providers[0]}, not {ORT_PROVIDERS[device]} (its "
            "CUDA or cuDNN libraries did not load; onnxruntime-gpu must match the installed CUDA): fix the install, "
            "or measure with --runtime torch"
        )


def bound_run(session, feed: dict[str, np.ndarray], device: str) -> Inference:
    """One inference with its input already on `device` and its output left there (onnxruntime's I/O binding): on
    a GPU the time is the network's, not the host copies'. Returns the binding's outputs."""
    import onnxruntime

    binding = session.io_binding()
    for name, array in feed.items():
        binding.bind_ortvalue_input(name, onnxruntime.OrtValue.ortvalue_from_numpy(array, device, 0))
    for output in session.get_outputs():
        binding.bind_output(output.name, device, 0)

    def run():
        session.run_with_iobinding(binding)
        return binding.get_outputs()

    return run


def export_any(model: nn.Module, example: tuple[torch.Tensor, ...], path: Path) -> list[str]:
    """Export `model` (a PoseNet, or one part of it taking several tensors) to `path`; returns its input names."""
    if isinstance(model, PoseNet):
        export_onnx(model, example[0], path)
        return [INPUT_NAME]
    names = [f"x{i}" for i in range(len(example))]
    with exporter_warnings_silenced(), torch.no_grad():
        torch.onnx.export(model, example, str(path), dynamo=False, input_names=names, opset_version=17)
    return names


RUNNERS: dict[str, Callable[[nn.Module, tuple[torch.Tensor, ...], Setting, Path], Inference]] = {
    "torch": _torch_runner,
    "ort": _ort_runner,
}


def runner(model: nn.Module, example: tuple[torch.Tensor, ...], setting: Setting, folder: Path) -> Inference:
    """One inference of `model` on `example` as `setting` says (an ONNX runtime writes its file into `folder`)."""
    return RUNNERS[setting.runtime](model, example, setting, folder)


def time_interleaved(
    runs: Mapping[str, Inference], seconds: float = 2.0, rounds: int = 5, warmup: int = 3
) -> dict[str, list[float]]:
    """Seconds of each timed run of each inference. After `warmup` runs each, `rounds` rounds run every inference
    in turn, each as many times as fills its share of `seconds` (at least 3): on a shared machine a slow moment
    then falls on all of them, and the medians compare."""
    estimate = {}
    for name, run in runs.items():
        for _ in range(warmup):
            run()
        start = time.perf_counter()
        run()
        estimate[name] = max(time.perf_counter() - start, 1e-6)
    share = seconds / rounds / max(len(runs), 1)
    per_round = {name: max(3, int(share / t)) for name, t in estimate.items()}
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            for _ in range(per_round[name]):
                start = time.perf_counter()
                run()
                samples[name].append(time.perf_counter() - start)
    return samples


def genome_model(genome: Genome, joints: int = 17) -> PoseNet:
    """The genome's network, seeded (latency does not depend on the values, but export and folding need real ones)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return PoseNet(genome.resolve(joints))


def example_input(setting: Setting) -> tuple[torch.Tensor]:
    return (torch.zeros(setting.batch, 3, *setting.input_hw),)


def measure_latencies(
    genomes: Mapping[str, Genome], setting: Setting, seconds: float = 2.0, rounds: int = 5, joints: int = 17
) -> dict[str, Latency]:
    """The latency of each genome, timed interleaved (`time_interleaved`), each given `seconds` in all."""
    with tempfile.TemporaryDirectory(prefix="hrnas-latency-") as tmp:
        runs = {}
        for i, (name, genome) in enumerate(genomes.items()):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            runs[name] = runner(genome_model(genome, joints), example_input(setting), setting, folder)
        samples = time_interleaved(runs, seconds * len(runs), rounds)
    return {name: of_samples(values, setting) for name, values in samples.items()}


def measure_latency(genome: Genome, setting: Setting, seconds: float = 2.0, joints: int = 17) -> Latency:
    return measure_latencies({"genome": genome}, setting, seconds, joints=joints)["genome"]


def machine_fingerprint() -> dict[str, str]:
    """What a latency depends on besides the network and the setting: the CPU, its core count and the runtimes'
    versions (a latency table fitted elsewhere does not apply here)."""
    import onnxruntime

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "gpu": gpu,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
