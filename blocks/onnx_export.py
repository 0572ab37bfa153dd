"""A network written to ONNX: what `hrnas export` writes and what latency is measured on with onnxruntime."""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from blocks.network import prepare_for_training, prepare_input

INPUT_NAME = "image"
OUTPUT_NAME = "heatmaps"
# Opsets each exporter writes natively: the TorchScript exporter up to 20 (nearest resize needs 11),
# the torch.export-based one from 18 (lower versions go through a lossy version converter).
OPSETS = {"torchscript": (11, 20, 17), "dynamo": (18, 23, 18)}


@contextlib.contextmanager
def exporter_warnings_silenced() -> Iterator[None]:
    """The exporters' known noise (TorchScript's deprecation, the tracer's shape-derived constants) silenced."""
    with warnings.catch_warnings():
        for category in (DeprecationWarning, FutureWarning, torch.jit.TracerWarning):
            warnings.simplefilter("ignore", category)
        yield


def export_onnx(
    model: nn.Module, example: torch.Tensor, out: Path, exporter: str = "torchscript", opset: int | None = None
) -> None:
    """Write `model` (eval mode) to `out` as one self-contained ONNX file with a fixed input shape.

    What is traced is a copy in the reference configuration (contiguous NCHW, the official grouped formulation of
    the dynamic kernels): the same function, without the channels-last fast paths, whose custom autograd Functions
    and complex-pair interleaving neither exporter can write. `model` itself is left as it is.
    """
    opset = OPSETS[exporter][2] if opset is None else opset
    model = prepare_for_training(copy.deepcopy(model), fast=False).eval()
    example = prepare_input(example, fast=False)
    common = {"input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME], "opset_version": opset}
    # Known noise: the TorchScript exporter is deprecated (DeprecationWarning), the tracer warns about
    # shape-derived ints (constants here: the input shape is fixed), the dynamo one logs missing torchvision ops.
    registration_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration_log.level
    with exporter_warnings_silenced(), torch.no_grad():
        registration_log.setLevel(logging.ERROR)
        try:
            if exporter == "torchscript":
                torch.onnx.export(model, (example,), str(out), dynamo=False, **common)
            else:
                program = torch.onnx.export(model, (example,), dynamo=True, verbose=False, **common)
                program.save(str(out), external_data=False)
        finally:
            registration_log.setLevel(level)
