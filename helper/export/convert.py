"""The ONNX graph of a classifier and its int8 versions: PyTorch's dynamo exporter (``torch.onnx.export(...,
dynamo=True)``) with dynamic batch and sequence axes, and ONNX Runtime's dynamic and static (QDQ) quantization.
Why this exporter and these quantizers: :mod:`helper.export`."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from helper.bench.models import model_input_names

FP32_FILE, INT8_FILE = "model.onnx", "model_int8.onnx"
QUANTIZE_MODES = ("none", "int8", "int8-static")
#: How each quantization mode is described in the report and the card.
QUANTIZE_METHODS = {
    "int8": "quantize_dynamic: int8 weights (QInt8) of all operators ORT supports incl. the embedding Gather, "
    "activations quantized at run time",
    "int8-static": "quantize_static (QDQ): int8 weights, uint8 activations with ranges calibrated (MinMax) on "
    "training examples",
}
OPSET = 18


@contextlib.contextmanager
def _quiet() -> Any:
    """Hide the exporter's and quantizer's progress prints, warnings and log lines (errors still raise)."""
    root = logging.getLogger()
    torch_onnx = logging.getLogger("torch.onnx")
    levels = root.level, torch_onnx.level
    root.setLevel(logging.ERROR)
    torch_onnx.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(levels[0])
        torch_onnx.setLevel(levels[1])


class _LogitsOnly(torch.nn.Module):
    """Wraps a classifier so the graph has named token inputs and one ``logits`` output."""

    def __init__(self, model: torch.nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return self.model(**{k: v for k, v in given.items() if k in self.names}).logits


def export_onnx(model: torch.nn.Module, tokenizer: Any, path: str | Path, opset: int = OPSET) -> list[str]:
    """Export ``model`` (eval mode) to ``path`` with dynamic batch and sequence axes; returns the input names.

    Uses ``torch.onnx.export(..., dynamo=True)`` (see the module docstring for why), then ONNX Script's graph
    optimisation; the model is saved as one file.
    """
    model = model.eval()
    names = model_input_names(model, tokenizer)
    sample = tokenizer(
        ["an example sentence for the export", "a shorter one"], padding=True, return_tensors="pt"
    )  # batch 2 with padding, so neither axis is specialised to 1 and the mask path is the general one
    if names[0] != "input_ids":
        raise ValueError(f"the model and tokenizer share the inputs {names}; expected input_ids among them")
    kwargs = {k: sample[k] for k in names}
    batch = torch.export.Dim("batch")
    max_pos = getattr(model.config, "max_position_embeddings", None)
    seq = torch.export.Dim("sequence", max=max_pos) if isinstance(max_pos, int) and max_pos > 2 else None
    seq = seq or torch.export.Dim("sequence")
    shapes = {k: {0: batch, 1: seq} for k in names}
    with _quiet():
        program = torch.onnx.export(
            _LogitsOnly(model, names).eval(),
            (),
            kwargs=kwargs,
            dynamo=True,
            input_names=names,
            output_names=["logits"],
            dynamic_shapes=shapes,
            opset_version=opset,
            optimize=True,
            verbose=False,
        )
        program.save(str(path), external_data=False)
    return names


def quantize_static_int8(src: str | Path, dst: str | Path, calibration: Sequence[dict[str, np.ndarray]]) -> None:
    """Static int8 quantization (QDQ format) with activation ranges calibrated on ``calibration`` inputs (batch-1
    dicts of int64 arrays). The graph is pre-processed (ONNX shape inference, ORT graph optimisation) first."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    pre = Path(dst).with_name(Path(dst).stem + ".pre.onnx")
    try:
        with _quiet():
            # symbolic shape inference does not complete on the dynamo exporter's graphs; ONNX's own is enough here
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            quantize_static(
                str(pre),
                str(dst),
                _Reader(),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
    finally:
        pre.unlink(missing_ok=True)
        for extra in Path(dst).parent.glob("*.onnx.data"):  # calibration may leave augmented-model data behind
            extra.unlink(missing_ok=True)


def quantize_int8(src: str | Path, dst: str | Path) -> None:
    """Dynamic int8 quantization with ONNX Runtime: int8 weights of every operator type ORT's dynamic quantizer
    supports (``MatMul``, the embedding ``Gather``, ...), activations quantized at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
