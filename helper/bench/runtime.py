"""ONNX models at run time: which packages are missing, ONNX Runtime CPU sessions, and facts read from an ONNX file
(size, precision, parameter count). Shared by the benchmark and :mod:`helper.export`."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

ONNX_EXTRA = 'pip install -e ".[onnx]"'
#: Modules the export needs beyond the core install (import name -> PyPI name).
ONNX_MODULES = {"onnx": "onnx", "onnxruntime": "onnxruntime", "onnxscript": "onnxscript"}


def missing_onnx_modules() -> list[str]:
    """PyPI names of the ONNX packages that are not installed."""
    return [pkg for mod, pkg in ONNX_MODULES.items() if importlib.util.find_spec(mod) is None]


def onnx_missing_message(missing: Sequence[str]) -> str:
    """The error text for missing ONNX packages, naming the extra to install."""
    return (
        f"ONNX support needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed; "
        f"install the project's onnx extra: {ONNX_EXTRA}"
    )


# ---------------------------------------------------------------------------------------------------- ONNX Runtime
def ort_session(path: str | Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session with ``threads`` intra-op threads (default: ORT's choice) and one inter-op thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def session_inputs(session: Any) -> list[str]:
    """Names of a session's inputs."""
    return [i.name for i in session.get_inputs()]


def run_session(session: Any, inputs: dict[str, Any]) -> np.ndarray:
    """Logits of one batch; ``inputs`` may hold tensors or arrays and extra keys (only the graph's inputs are fed)."""
    feed = {}
    for name in session_inputs(session):
        value = inputs[name]
        feed[name] = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        if feed[name].dtype != np.int64:
            feed[name] = feed[name].astype(np.int64)
    return session.run(None, feed)[0]


def onnx_size_mb(path: str | Path) -> float:
    """Size in MB (10^6 bytes) of an ONNX file plus its external-data files (``<file>.data``), if any."""
    path = Path(path)
    files = [path, *path.parent.glob(f"{path.name}.data")]
    return sum(p.stat().st_size for p in files if p.is_file()) / 1e6


def onnx_precision(path: str | Path) -> str:
    """``"int8"`` when the graph holds integer-quantized operators, else ``"float32"``."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    quantized = {"MatMulInteger", "DynamicQuantizeLinear", "QLinearMatMul", "DequantizeLinear", "QAttention"}
    return "int8" if any(n.op_type in quantized for n in model.graph.node) else "float32"


def onnx_param_count(path: str | Path) -> int:
    """Number of weights in an ONNX file: elements of its initializers that are not scalars (scales, zero points)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return sum(math.prod(t.dims) for t in model.graph.initializer if math.prod(t.dims) > 1)


# ---------------------------------------------------------------------------------------------------- export
