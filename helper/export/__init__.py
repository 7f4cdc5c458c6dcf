"""Deployable models: ONNX export checked against PyTorch, int8 quantization behind an accuracy gate, a model card.

``python export.py outputs/student_sst2 outputs/student_sst2_onnx --quantize int8 --dataset ../shared/data/sst2``
writes ``model.onnx`` (fp32), ``model_int8.onnx``, the tokenizer, ``config.json`` (labels), ``export_report.json``
and a ``README.md`` model card into a temporary folder beside the target and renames it into place only when every
check passed:

1. **Export** with PyTorch's own exporter, ``torch.onnx.export(..., dynamo=True)`` (``torch.export`` + ONNX Script),
   with dynamic batch and sequence axes. Why this one:

   * the legacy TorchScript exporter (``dynamo=False``) *traces* the model, and transformers v5 builds the attention
     mask with Python branches on tensor values (e.g. "is the mask all ones?"); the trace freezes the branch taken for
     the example input, so a model traced on an unpadded batch ignores padding later. Measured on a tiny BERT: max
     abs logit difference 0.03 on padded batches (dynamo exporter: 2e-8);
   * ``optimum-onnx`` (0.1.0) requires ``transformers<4.58`` and this project needs transformers v5, so it cannot be
     installed beside it; ``torch.onnx`` adds only ``onnxscript`` to what PyTorch already ships.

2. **Verify** fp32 ONNX Runtime against PyTorch on the validation examples (padded batches of several sizes and
   lengths): the max abs logit difference must be <= 1e-4, else the export is refused.
3. **Quantize** (``--quantize int8``) with ONNX Runtime dynamic quantization (``quantize_dynamic``: int8 weights,
   activations quantized per call, no calibration data). All the operator types ORT's dynamic quantizer handles are
   quantized, including the embedding ``Gather`` (the word-embedding matrix is most of a small student's weights:
   11.7 M of 15.6 M parameters for a 2-layer, 384-wide BERT with a 30k vocabulary).
   ``--quantize int8-static`` instead calibrates activation ranges on ``--calibration-samples`` training examples
   (``quantize_static``, QDQ format); it is an option, not the default (see the README for how the two measured).
4. **Gate:** fp32 and int8 accuracy on the validation split, in padded batches and one example at a time (int8
   results depend on the batch: dynamic quantization scales span the batch, static ones see padding); the int8 model
   is refused (non-zero exit, nothing written or replaced) when it loses more than ``--max-drop`` points either way.

The modules: :mod:`~helper.export.convert` (the exporter and the quantizers), :mod:`~helper.export.inputs` (settings,
folders and data, checked before any work; :class:`ExportError`), :mod:`~helper.export.run` (verify, gate, write,
upload) and :mod:`~helper.export.cli` (``export.py``'s flags and summary table).
"""

from helper.export.cli import build_parser, main, summary_table
from helper.export.convert import (
    FP32_FILE,
    INT8_FILE,
    OPSET,
    QUANTIZE_METHODS,
    QUANTIZE_MODES,
    export_onnx,
    quantize_int8,
    quantize_static_int8,
)
from helper.export.inputs import (
    Batches,
    ExportError,
    ExportOptions,
    ExportRefused,
    check_model_folder,
    check_output,
    load_batches,
)
from helper.export.run import (
    FP32_TOLERANCE,
    REPORT_FILE,
    ExportResult,
    accuracy_drop_points,
    export_model,
    push_folder,
    scores,
)

__all__ = [
    "FP32_FILE",
    "FP32_TOLERANCE",
    "INT8_FILE",
    "OPSET",
    "QUANTIZE_METHODS",
    "QUANTIZE_MODES",
    "REPORT_FILE",
    "Batches",
    "ExportError",
    "ExportOptions",
    "ExportRefused",
    "ExportResult",
    "accuracy_drop_points",
    "build_parser",
    "check_model_folder",
    "check_output",
    "export_model",
    "export_onnx",
    "load_batches",
    "main",
    "push_folder",
    "quantize_int8",
    "quantize_static_int8",
    "scores",
    "summary_table",
]
