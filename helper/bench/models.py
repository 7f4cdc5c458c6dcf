"""The models compared: checks before anything runs, sizes, and loading into a :class:`Runner`.

A model is a PyTorch folder or cached Hub name (``*ForSequenceClassification``), or an ONNX model written by
``export.py``: a ``.onnx`` file, or a folder holding ``model.onnx`` (else ``model_int8.onnx``) and no PyTorch weights,
next to a tokenizer (and ``config.json`` for the class names). Every model must exist, hold such a config, weight
files (or an ONNX file) and a tokenizer (or ``--tokenizer``), and agree with the data on the number of classes and,
when both name them, on the class names; all problems are collected. PyTorch models run in eval mode on the chosen
device; ONNX models in ONNX Runtime CPU sessions with ``intra_op_num_threads`` = ``--threads`` and one inter-op
thread, on the same pre-tokenized inputs.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedTokenizerBase

from common.hub import HubUnavailableError
from data.data_module import MODEL_INPUTS
from helper.bench.runtime import (
    onnx_missing_message,
    onnx_param_count,
    onnx_precision,
    onnx_size_mb,
    ort_session,
    session_inputs,
)
from helper.models import load_tokenizer, resolve_model_path

WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
#: Files that show a folder carries its own tokenizer.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model")


#: ONNX files looked for in a folder given as a model, by preference (the names ``export.py`` writes).
ONNX_FILES = ("model.onnx", "model_int8.onnx")


@dataclass
class ModelSpec:
    """A checked model: where it is, its config and tokenizer.

    Attributes:
        name: Display name.
        source: The name or path as given.
        path: Resolved folder or Hub name.
        config: The model's configuration.
        tokenizer: The tokenizer used to encode the data for this model.
        tokenizer_source: Where the tokenizer came from.
        size_mb: Size of the weight files (or the ONNX file) in MB (10^6 bytes), or None when unknown.
        onnx_file: The ONNX file to run with ONNX Runtime, or None for a PyTorch model.
    """

    name: str
    source: str
    path: str
    config: PretrainedConfig | None
    tokenizer: PreTrainedTokenizerBase
    tokenizer_source: str
    size_mb: float | None = None
    onnx_file: str | None = None


def _is_default_names(names: Sequence[str]) -> bool:
    return all(str(n) == f"LABEL_{i}" for i, n in enumerate(names))


def weights_size_mb(path: str | Path) -> float | None:
    """Size in MB (10^6 bytes) of a model folder's weight files (``*.safetensors``, else ``pytorch_model*.bin``).

    Hub names are looked up in the local cache. Returns None when no weight file is found.
    """
    folder = Path(path)
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(str(path), local_files_only=True))
        except Exception:  # not cached, or not a Hub name: the size is unknown
            return None
    for pattern in WEIGHT_PATTERNS:
        files = [p for p in folder.glob(pattern) if p.is_file()]
        if files:
            return sum(p.stat().st_size for p in files) / 1e6
    return None


def inspect_models(
    models: Sequence[str | Path],
    names: Sequence[str] | None,
    label_names: Sequence[str] | None,
    tokenizer: str | PreTrainedTokenizerBase | None = None,
    max_length: int = 128,
) -> tuple[list[ModelSpec], list[str]]:
    """Check every model from its config and files (no weights are loaded).

    Args:
        models: Model folders (or Hub names / aliases).
        names: Display names, one per model (default: the folder names).
        label_names: The data's class names, for the label checks (skipped when None).
        tokenizer: Tokenizer for models whose folder has none (object, path or Hub name).
        max_length: Truncation length, checked against the models' position embeddings.

    Returns:
        The checked models and the problems found (all models are checked even after a problem).
    """
    problems: list[str] = []
    if not models:
        return [], ["models=[]: expected at least one model folder"]
    if names is not None and len(names) != len(models):
        problems.append(f"names has {len(names)} entries for {len(models)} models; expected one name per model")
        names = None
    if names is None:
        names = _default_names([str(m) for m in models])
    elif len(set(names)) != len(names):
        problems.append(f"names={list(names)}: expected distinct names")
    fallback = None
    if tokenizer is not None:
        try:
            fallback = tokenizer if isinstance(tokenizer, PreTrainedTokenizerBase) else load_tokenizer(tokenizer)
        except (OSError, ValueError) as err:
            problems.append(f"tokenizer={str(tokenizer)!r} could not be loaded: {err}")
    specs = []
    for source, name in zip(models, names, strict=True):
        spec, found = _inspect_model(str(source), name, label_names, fallback, tokenizer, max_length)
        problems += found
        if spec is not None:
            specs.append(spec)
    return specs, problems


def _default_names(sources: Sequence[str]) -> list[str]:
    names = [Path(s.rstrip("/")).name or s for s in sources]
    if len(set(names)) == len(names):
        return names
    parents = [Path(s.rstrip("/")).parent.name for s in sources]
    return [f"{p}/{n}" if names.count(n) > 1 else n for p, n in zip(parents, names, strict=True)]


def onnx_model_file(source: str) -> Path | None:
    """The ONNX file a model argument names: a ``.onnx`` path, or a folder without PyTorch weights that holds
    ``model.onnx`` (else ``model_int8.onnx``); None for anything else (a PyTorch folder or a Hub name)."""
    path = Path(source).expanduser()
    if path.suffix.lower() == ".onnx":
        return path
    if path.is_dir() and weights_size_mb(path) is None:
        for name in ONNX_FILES:
            if (path / name).is_file():
                return path / name
    return None


def _inspect_model(
    source: str,
    name: str,
    label_names: Sequence[str] | None,
    fallback: PreTrainedTokenizerBase | None,
    fallback_source: Any,
    max_length: int,
) -> tuple[ModelSpec | None, list[str]]:
    where = f"model {name!r}" + (f" ({source})" if source != name else "")
    onnx_file = onnx_model_file(source)
    if onnx_file is not None:
        path, config, size, num_labels, problems = _inspect_onnx(where, onnx_file)
        if path is None:
            return None, problems
    else:
        try:
            path = resolve_model_path(source)
        except (FileNotFoundError, HubUnavailableError) as err:
            return None, [f"{where}: {err}"]
        try:
            config = AutoConfig.from_pretrained(path)
        except (OSError, ValueError, KeyError) as err:
            return None, [f"{where}: cannot read its config: {err}"]
        problems = []
        archs = list(config.architectures or [])
        if not any(a.endswith("ForSequenceClassification") for a in archs):
            problems.append(
                f"{where} is not a sequence classifier (config.architectures={archs}); expected a fine-tuned "
                "*ForSequenceClassification folder, e.g. the output of finetune.py or distillation_*.py"
            )
            num_labels = None
        else:
            num_labels = config.num_labels
        size = weights_size_mb(path)
        if Path(path).is_dir() and size is None:
            problems.append(f"{where} holds no weight files; expected one of {list(WEIGHT_PATTERNS)}")
    if label_names is not None and num_labels is not None:
        label_names = [str(n) for n in label_names]
        if num_labels != len(label_names):
            problems.append(
                f"{where} has num_labels={num_labels} but the data has {len(label_names)} classes "
                f"{label_names}; expected the same label count"
            )
        elif config is not None:
            model_names = [str(config.id2label.get(i, f"LABEL_{i}")) for i in range(config.num_labels)]
            if not _is_default_names(model_names) and not _is_default_names(label_names):
                if model_names != label_names:
                    problems.append(
                        f"{where} has id2label names {model_names} but the data's label names are "
                        f"{label_names}; expected the same names in the same order (or pass --label-names)"
                    )
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and max_length > positions:
        problems.append(
            f"{where}: max_length={max_length} exceeds its max_position_embeddings={positions}; expected "
            f"max_length <= {positions}"
        )
    tok, tok_source = None, None
    has_own = not Path(path).is_dir() or any((Path(path) / f).is_file() for f in TOKENIZER_FILES)
    tok_error = None
    if has_own:
        try:
            tok, tok_source = load_tokenizer(path), path
        except (OSError, ValueError) as err:
            tok_error = err
    if tok is None and fallback is not None:
        tok, tok_source = fallback, str(getattr(fallback_source, "name_or_path", fallback_source))
    elif tok_error is not None:
        problems.append(f"{where}: its tokenizer could not be loaded ({tok_error}); pass --tokenizer")
    elif tok is None:
        problems.append(
            f"{where} has no tokenizer files ({', '.join(TOKENIZER_FILES)}); expected a tokenizer saved with the "
            "model, or pass --tokenizer"
        )
    vocab = getattr(config, "vocab_size", None)
    if tok is not None and isinstance(vocab, int) and len(tok) > vocab:
        problems.append(
            f"{where}: its tokenizer has {len(tok)} tokens but the model's vocab_size is {vocab}; expected a "
            "tokenizer that fits the model"
        )
    if problems:
        return None, problems
    file = str(onnx_file) if onnx_file is not None else None
    return ModelSpec(name, source, path, config, tok, str(tok_source), size, file), []


def _inspect_onnx(
    where: str, file: Path
) -> tuple[str | None, PretrainedConfig | None, float | None, int | None, list[str]]:
    """Check an ONNX model: the packages, the file, and the folder's ``config.json`` when there is one.

    Returns:
        The folder (None when unusable), its config (or None), the file size in MB, the number of classes (from the
        config, else the graph's output; None when unknown) and the problems.
    """
    missing = [pkg for pkg in ("onnx", "onnxruntime") if importlib.util.find_spec(pkg) is None]
    if missing:
        return None, None, None, None, [f"{where} is an ONNX model, but {onnx_missing_message(missing)}"]
    if not file.is_file():
        return None, None, None, None, [f"{where}: ONNX file {str(file)!r} does not exist"]
    import onnx

    try:
        graph = onnx.load(str(file), load_external_data=False).graph
    except Exception as err:  # onnx raises DecodeError and others for a damaged file
        return None, None, None, None, [f"{where}: {str(file)!r} is not a readable ONNX model ({err})"]
    problems = []
    folder = file.parent
    config = None
    if (folder / "config.json").is_file():
        try:
            config = AutoConfig.from_pretrained(folder)
        except (OSError, ValueError, KeyError) as err:
            problems.append(f"{where}: cannot read the config.json beside it: {err}")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in graph.output[0].type.tensor_type.shape.dim]
    num_labels = config.num_labels if config is not None else (dims[-1] if dims and dims[-1] else None)
    return str(folder), config, onnx_size_mb(file), num_labels, problems


def _ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> None:
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token


def model_input_names(model: torch.nn.Module, tokenizer: Any) -> list[str]:
    """The token inputs that both the model's ``forward`` and the tokenizer use, in :data:`MODEL_INPUTS` order."""
    params = inspect.signature(model.forward).parameters
    return [k for k in MODEL_INPUTS if k in params and k in tokenizer.model_input_names]


@dataclass
class Runner:
    """A loaded model, ready to time: PyTorch or an ONNX Runtime session.

    Attributes:
        spec: The checked model.
        keys: Token inputs the model takes.
        prepare: Turns a dict of token tensors into the model's native inputs (device tensors or int64 arrays); called
            outside the timed region unless tokenization is timed too.
        run: Logits (a CPU or device tensor) for prepared inputs.
        params: Number of parameters (ONNX: elements of the non-scalar initializers).
        dtype: Weight precision, e.g. ``float32`` or ``int8``.
        runtime: ``"torch"`` or ``"onnxruntime"``.
    """

    spec: ModelSpec
    keys: list[str]
    prepare: Callable[[dict[str, torch.Tensor]], Any]
    run: Callable[[Any], torch.Tensor]
    params: int
    dtype: str
    runtime: str


def load_runner(spec: ModelSpec, device: torch.device, threads: int) -> Runner:
    """Load ``spec``: a PyTorch model in eval mode on ``device``, or an ONNX Runtime CPU session with ``threads``
    intra-op threads and one inter-op thread."""
    tok = spec.tokenizer
    _ensure_pad_token(tok)
    if spec.onnx_file is not None:
        session = ort_session(spec.onnx_file, threads)
        keys = session_inputs(session)

        def prepare_np(tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
            return {k: tensors[k].cpu().numpy().astype(np.int64, copy=False) for k in keys}

        def run_np(inputs: dict[str, np.ndarray]) -> torch.Tensor:
            return torch.from_numpy(session.run(None, inputs)[0])

        precision = onnx_precision(spec.onnx_file)
        return Runner(spec, keys, prepare_np, run_np, onnx_param_count(spec.onnx_file), precision, "onnxruntime")
    model = AutoModelForSequenceClassification.from_pretrained(spec.path).eval().to(device)
    if model.config.pad_token_id is None and tok.pad_token_id is not None:
        model.config.pad_token_id = tok.pad_token_id
    keys = model_input_names(model, tok)

    def prepare(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(device) for k, v in tensors.items() if k in keys}

    def run(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**inputs).logits

    params = sum(p.numel() for p in model.parameters())
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    return Runner(spec, keys, prepare, run, params, dtype, "torch")
