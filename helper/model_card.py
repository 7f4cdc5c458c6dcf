"""Model cards (``README.md`` in the Hugging Face model-card convention) for exported models.

Every model folder the project writes (``HgExport`` after training, ``export.py`` for ONNX) carries a card: a YAML
header that the Hub reads (``base_model``, ``datasets``, ``metrics``, ``tags``, ``license``, ``pipeline_tag``,
``model-index`` with the measured accuracy) and a body for people (teacher, recipe, size, accuracy, how to load it).
The header is built with ``huggingface_hub.ModelCardData`` rather than by hand, and it also holds the card's facts
under the key ``transformer_distiller`` so that a later step (``export.py``) can read them back and extend the card.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

CARD_NAME = "README.md"
#: YAML key holding the facts the card was rendered from (read back by :func:`read_card_info`).
INFO_KEY = "transformer_distiller"
#: The packaged MiniLM's Hub name (the ``minilm`` alias of :mod:`helper.models`).
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
#: Local copies of Hub data sets under ``../shared/data``: folder name -> (Hub id, configuration).
KNOWN_DATASETS = {
    "sst2": ("nyu-mll/glue", "sst2"),
    "rte": ("nyu-mll/glue", "rte"),
    "tweet_eval_emotion": ("cardiffnlp/tweet_eval", "emotion"),
    "go_emotions": ("google-research-datasets/go_emotions", "simplified"),
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass
class CardInfo:
    """The facts a model card states.

    Attributes:
        name: Model name (the folder name by default).
        role: ``"student"`` (distilled), ``"teacher"`` (fine-tuned) or ``"classifier"`` (origin unknown).
        labels: Class names in label order.
        base_model: Hub id of the model this one derives from (None when it is only a local folder).
        teacher: The teacher as the run named it (path or Hub id), for students.
        dataset: The training/evaluation data as given (a Hub name, a folder or ``"demo"``).
        split: Split the metrics were measured on.
        recipe: Training settings in display order (stage, adaptors, alpha, temperature, lr, steps, ...).
        params: Number of parameters.
        size_mb: Size of the weight files in MB (10^6 bytes).
        architecture: Layers, hidden size and heads, as text.
        metrics: Quality on ``split`` as fractions (``accuracy``, ``f1_macro``, ...).
        metrics_source: Where the metrics come from (e.g. "best validation epoch", "export.py").
        baseline: The same student trained alone (no teacher), when the run has it: metrics as fractions.
        latency: Measured latency as text with its command, when known.
        onnx: ONNX export facts (files, sizes, max |logit difference|, accuracies, the gate), when exported.
        pytorch_source: Folder of the PyTorch weights (for ONNX-only folders).
        license: SPDX license id of the weights.
    """

    name: str
    role: str = "classifier"
    labels: list[str] = field(default_factory=list)
    base_model: str | None = None
    teacher: str | None = None
    dataset: str | None = None
    split: str = "validation"
    recipe: dict[str, Any] = field(default_factory=dict)
    params: int | None = None
    size_mb: float | None = None
    architecture: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_source: str | None = None
    baseline: dict[str, float] | None = None
    latency: str | None = None
    onnx: dict[str, Any] | None = None
    pytorch_source: str | None = None
    license: str = "apache-2.0"

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (YAML-safe) of the facts."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CardInfo:
        """The inverse of :meth:`to_dict`; unknown keys are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def hub_dataset(dataset: str | None) -> tuple[str, str | None] | None:
    """The Hub id and configuration of a data source, or None when it has none (``demo``, unknown local files)."""
    if not dataset or dataset == "demo":
        return None
    path = Path(dataset)
    if path.name in KNOWN_DATASETS and (path.exists() or "/" in dataset):
        return KNOWN_DATASETS[path.name]
    if not path.exists() and _HUB_ID.match(dataset):
        return dataset, None
    return None


def hub_base_model(source: str | None, _depth: int = 0) -> str | None:
    """The Hub id behind a model name: the alias ``minilm``, a Hub name, the ``base_model`` of a local folder's card,
    or (no card) what its ``config.json`` was loaded from (``_name_or_path``), followed a few steps.

    Returns None when none of these leads to a Hub id (the Hub accepts only Hub ids there).
    """
    if not source or _depth > 3:
        return None
    from helper.models import ALIASES, packaged_minilm

    text = str(source)
    if text.lower() in ALIASES:
        return MINILM_HUB_ID
    path = Path(text).expanduser()
    if path.exists():
        try:
            if path.resolve() == packaged_minilm().resolve():
                return MINILM_HUB_ID
        except (ImportError, OSError):
            pass
        info = read_card_info(path)
        if info is not None and info.base_model:
            return info.base_model
        card = path / CARD_NAME
        if card.is_file():
            try:
                base = ModelCard.load(card).data.base_model
            except Exception:  # a hand-written README without a valid header
                base = None
            if isinstance(base, str) and base:
                return base
        config = path / "config.json"
        if config.is_file():
            import json

            try:
                origin = json.loads(config.read_text(encoding="utf-8")).get("_name_or_path")
            except (OSError, ValueError):
                origin = None
            if isinstance(origin, str) and origin and Path(origin).expanduser() != path:
                return hub_base_model(origin, _depth + 1)
        return None
    return text if _HUB_ID.match(text) else None


def read_card_info(folder: str | Path) -> CardInfo | None:
    """The facts stored in a folder's card by :func:`write_model_card`, or None (no card, or not one of ours)."""
    card = Path(folder) / CARD_NAME
    if not card.is_file():
        return None
    try:
        data = ModelCard.load(card).data.to_dict()
    except Exception:  # not a model card with a YAML header
        return None
    stored = data.get(INFO_KEY)
    return CardInfo.from_dict(stored) if isinstance(stored, dict) and "name" in stored else None


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _mb(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} MB"


def _recipe_lines(info: CardInfo) -> list[str]:
    lines = []
    if info.teacher:
        lines.append(f"- **teacher:** `{info.teacher}`")
    for key, value in info.recipe.items():
        if key == "adaptors" and isinstance(value, list):
            parts = [f"{a.get('name')} (weight {a.get('weight')})" if isinstance(a, dict) else str(a) for a in value]
            value = ", ".join(parts) or "none"
        lines.append(f"- **{key.replace('_', ' ')}:** {value}")
    return lines


def _usage(info: CardInfo) -> list[str]:
    torch_folder = info.pytorch_source or "path/to/this/folder"
    lines = ["## How to use", "", "With 🤗 Transformers (PyTorch weights):", "", "```python"]
    problem = info.recipe.get("problem type")
    if problem == "multi_label_classification":  # one sigmoid score per label; choose a threshold (0.5 by default)
        call = [
            f'classifier = pipeline("text-classification", model="{torch_folder}", top_k=None)',
            "scores = classifier(['thanks, this made my day'])[0]  # every label with its own sigmoid score",
            "print([s['label'] for s in scores if s['score'] >= 0.5])",
        ]
    else:  # single-label: the top class (softmax); regression: the predicted number
        call = [
            f'classifier = pipeline("text-classification", model="{torch_folder}")',
            'print(classifier("a gripping, beautifully shot film"))',
        ]
    lines += ["from transformers import pipeline", "", *call, "```"]
    onnx_file = "model_int8.onnx" if info.onnx and info.onnx.get("int8") else "model.onnx"
    lines += ["", "With ONNX Runtime (files written by `export.py`):", "", "```python"]
    lines += [
        "import numpy as np",
        "import onnxruntime as ort",
        "from transformers import AutoConfig, AutoTokenizer",
        "",
        'folder = "path/to/the/onnx/folder"',
        "tokenizer = AutoTokenizer.from_pretrained(folder)",
        "config = AutoConfig.from_pretrained(folder)",
        f'session = ort.InferenceSession(f"{{folder}}/{onnx_file}", providers=["CPUExecutionProvider"])',
        "names = [i.name for i in session.get_inputs()]",
        'enc = tokenizer(["a gripping, beautifully shot film"], return_tensors="np")',
        "logits = session.run(None, {k: enc[k].astype(np.int64) for k in names})[0]",
        "print(config.id2label[int(logits[0].argmax())])",
        "```",
        "",
        "To publish the folder on the Hugging Face Hub (needs network access and a token from `hf auth login`):",
        "`python export.py <model folder> <out folder> --push-to-hub <user>/<name>`, or",
        "`huggingface_hub.upload_folder(repo_id=..., folder_path=...)` for any folder the project wrote.",
    ]
    return lines


def render_body(info: CardInfo) -> str:
    """The Markdown body of the card (everything below the YAML header)."""
    what = {
        "student": f"A student distilled from the teacher `{info.teacher}`" if info.teacher else "A distilled student",
        "teacher": "A fine-tuned classifier (a teacher for distillation)",
    }.get(info.role, "A text classifier")
    data = f" on `{info.dataset}`" if info.dataset else ""
    lines = [f"# {info.name}", "", f"{what}{data}, made with Transformer Distiller.", ""]
    if info.labels:
        lines += [f"Labels (in index order): {', '.join(f'`{n}`' for n in info.labels)}.", ""]
    size_title = "size on disk (PyTorch weights)" if info.onnx else "size on disk"
    lines += ["## Model", "", f"| parameters | {size_title} | architecture |", "|---|---|---|"]
    params = "–" if info.params is None else f"{info.params / 1e6:.2f} M"
    lines += [f"| {params} | {_mb(info.size_mb)} | {info.architecture or '–'} |", ""]
    recipe = _recipe_lines(info)
    if recipe:
        lines += ["## Training recipe", "", *recipe, ""]
    lines += [f"## Evaluation (`{info.dataset or 'data'}`, {info.split} split)", ""]
    if info.metrics:
        source = f" ({info.metrics_source})" if info.metrics_source else ""
        lines += ["| model | accuracy (%) | macro F1 (%) |", "|---|---|---|"]
        lines.append(
            f"| this model{source} | {_pct(info.metrics.get('accuracy'))} | {_pct(info.metrics.get('f1_macro'))} |"
        )
        if info.baseline:
            b = info.baseline
            lines.append(f"| same student trained alone | {_pct(b.get('accuracy'))} | {_pct(b.get('f1_macro'))} |")
        lines.append("")
    else:
        lines += ["No evaluation was recorded with this folder.", ""]
    lines += [
        f"Latency: {info.latency}"
        if info.latency
        else "Latency: not measured with this folder; `benchmark.py <folder> --dataset <data> --threads 1` measures "
        "size, batch-1 latency, throughput and accuracy side by side with other models.",
        "",
    ]
    if info.onnx:
        lines += _onnx_section(info.onnx)
    lines += _usage(info)
    return "\n".join(lines) + "\n"


def _onnx_section(onnx: dict[str, Any]) -> list[str]:
    lines = ["## ONNX export", ""]
    lines += [
        f"Exported with `{onnx.get('exporter', 'torch.onnx')}` (opset {onnx.get('opset', '?')}), dynamic batch and "
        f"sequence axes; checked against PyTorch on {onnx.get('examples', '?')} `{onnx.get('dataset', '?')}` "
        f"{onnx.get('split', '')} examples.",
        "",
        "| file | size | accuracy (%) | max abs logit difference vs PyTorch |",
        "|---|---|---|---|",
    ]
    lines.append(
        f"| PyTorch (source) | {_mb(onnx.get('pytorch_size_mb'))} | {_pct(onnx.get('pytorch_accuracy'))} | – |"
    )
    for key in ("fp32", "int8"):
        entry = onnx.get(key)
        if entry:
            lines.append(
                f"| `{entry['file']}` ({key}) | {_mb(entry.get('size_mb'))} | {_pct(entry.get('accuracy'))} | "
                f"{entry.get('max_abs_diff', float('nan')):.2e} |"
            )
    int8 = onnx.get("int8")
    if int8:
        lines += [
            "",
            f"int8: ONNX Runtime quantization, {int8.get('method', 'dynamic')}. Accuracy gate: the int8 "
            f"model may lose at most {onnx.get('max_drop')} points against fp32, in padded batches and at batch 1; it "
            f"lost {int8.get('drop_points_padded', int8.get('drop_points')):.2f} and "
            f"{int8.get('drop_points_batch1', int8.get('drop_points')):.2f} points (int8 accuracy at batch 1: "
            f"{_pct(int8.get('accuracy_batch1'))} %), so it was accepted.",
        ]
    return [*lines, ""]


def render_model_card(info: CardInfo) -> ModelCard:
    """The card for ``info``: YAML header from ``ModelCardData`` (with ``model-index`` results) and the body."""
    hub_data = hub_dataset(info.dataset)
    results = []
    if info.metrics.get("accuracy") is not None:
        results.append(
            EvalResult(
                task_type="text-classification",
                dataset_type=hub_data[0] if hub_data else str(info.dataset or "unknown"),
                dataset_name=Path(str(info.dataset)).name if info.dataset else "unknown",
                dataset_config=hub_data[1] if hub_data else None,
                dataset_split=info.split,
                metric_type="accuracy",
                metric_value=round(float(info.metrics["accuracy"]), 6),
            )
        )
    tags = ["text-classification", "transformer-distiller"]
    tags += {"student": ["knowledge-distillation", "distilled"], "teacher": ["fine-tuned"]}.get(info.role, [])
    if info.onnx:
        tags += ["onnx"] + (["int8", "quantized"] if info.onnx.get("int8") else [])
    data = ModelCardData(
        base_model=info.base_model,
        datasets=[hub_data[0]] if hub_data else None,
        metrics=["accuracy", "f1"],
        tags=tags,
        license=info.license,
        pipeline_tag="text-classification",
        library_name="transformers" if not info.onnx else "onnx",
        model_name=info.name,
        eval_results=results or None,
        **{INFO_KEY: info.to_dict()},
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{render_body(info)}")


def write_model_card(folder: str | Path, info: CardInfo) -> Path:
    """Write ``README.md`` for ``info`` into ``folder`` (the caller makes the folder atomic); returns its path."""
    path = Path(folder) / CARD_NAME
    path.write_text(str(render_model_card(info)), encoding="utf-8")
    return path
