"""Loading teachers and students by Hub name, local path or alias, and making students from teachers."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from common.resolve import (  # noqa: F401 (ALIASES, packaged_minilm, load_tokenizer: public names of this module)
    ALIASES,
    OFFLINE_ALTERNATIVES,
    load_tokenizer,
    packaged_minilm,
    resolve_model_path,
)


def load_classifier(
    name_or_path: str | Path,
    num_labels: int | None = None,
    id2label: dict[int, str] | None = None,
    require_head: bool = False,
) -> PreTrainedModel:
    """Load a sequence classifier; a base encoder gets a new head with ``num_labels`` outputs.

    Args:
        name_or_path: Hub name, local folder or alias.
        num_labels: Number of classes expected from the data; checked against a fine-tuned model's head.
        id2label: Class names to store in the model config.
        require_head: Fail when the folder is not a fine-tuned classifier (e.g. a teacher for distillation).

    Raises:
        ValueError: The model's label count differs from ``num_labels``, or it has no trained head when required.
    """
    path = resolve_model_path(name_or_path)
    config = AutoConfig.from_pretrained(path)
    is_classifier = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
    if require_head and not is_classifier:
        raise ValueError(
            f"model {str(name_or_path)!r} is not a sequence classifier (architectures={config.architectures}); "
            "expected a fine-tuned *ForSequenceClassification folder, e.g. the output of finetune.py"
        )
    kwargs = {}
    if is_classifier:
        if num_labels is not None and config.num_labels != num_labels:
            raise ValueError(
                f"model {str(name_or_path)!r} has num_labels={config.num_labels} but the data has {num_labels} "
                "classes; expected the same label count"
            )
    elif num_labels is not None:
        kwargs["num_labels"] = num_labels
    if id2label is not None and (not is_classifier or config.id2label in (None, {}) or _default_names(config)):
        kwargs["id2label"] = dict(id2label)
        kwargs["label2id"] = {v: k for k, v in id2label.items()}
    model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
    model.name_or_path = path
    return model


def _default_names(config: object) -> bool:
    return all(str(v) == f"LABEL_{k}" for k, v in (config.id2label or {}).items())


def _encoder_layers(model: PreTrainedModel) -> torch.nn.ModuleList:
    base = model.base_model
    for path in ("encoder.layer", "transformer.layer"):
        obj = base
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, torch.nn.ModuleList):
            return obj
    raise ValueError(
        f"cannot cut layers from {type(model).__name__} (model_type={model.config.model_type!r}): expected "
        "encoder.layer (BERT, RoBERTa, ELECTRA) or transformer.layer (DistilBERT), the supported families; "
        "use a saved student folder or a {num_layers: ...} student instead"
    )


def student_from_layers(teacher: PreTrainedModel, layers: Sequence[int]) -> PreTrainedModel:
    """A student made of a subset of the teacher's encoder layers (embeddings and classifier head copied).

    Args:
        teacher: A classifier (typically fine-tuned; its head is kept).
        layers: 0-based teacher layer indices to keep, in order, e.g. ``[0, 5]`` or every other layer.

    Raises:
        ValueError: Empty, repeated, unsorted or out-of-range indices.
    """
    blocks = _encoder_layers(teacher)
    depth = len(blocks)
    layers = list(layers)
    bad = [i for i in layers if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < depth]
    if not layers or bad or len(set(layers)) != len(layers) or layers != sorted(layers):
        raise ValueError(
            f"student layers={layers}: expected distinct increasing indices in 0..{depth - 1} (the teacher has "
            f"{depth} layers)" + (f"; invalid: {bad}" if bad else "")
        )
    student = copy.deepcopy(teacher).requires_grad_(True).train()  # the teacher may be frozen; the student trains
    student_blocks = _encoder_layers(student)
    kept = torch.nn.ModuleList([student_blocks[i] for i in layers])
    parent = student.base_model.encoder if hasattr(student.base_model, "encoder") else student.base_model.transformer
    parent.layer = kept
    for attr in ("num_hidden_layers", "n_layers"):
        if hasattr(student.config, attr):
            setattr(student.config, attr, len(layers))
    for new_index, block in enumerate(kept):  # keep per-layer indices (used by caches in some models) consistent
        for module in block.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index
    return student


def student_from_config(
    teacher: PreTrainedModel | PretrainedConfig,
    num_layers: int,
    hidden_size: int | None = None,
    num_heads: int | None = None,
    intermediate_size: int | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> PreTrainedModel:
    """A randomly initialised student with the teacher's vocabulary and labels but a smaller shape.

    Args:
        teacher: The teacher (or a config) whose config (vocabulary, labels, architecture) is copied.
        num_layers: Student depth.
        hidden_size: Student width (default: the teacher's).
        num_heads: Attention heads (default: the teacher's); must divide ``hidden_size``.
        intermediate_size: Feed-forward width (default: 4 x ``hidden_size``).
        tokenizer: The student's own tokenizer (e.g. :func:`data.vocab.student_vocabulary`): its vocabulary size and
            padding id replace the teacher's.
    """
    config = copy.deepcopy(getattr(teacher, "config", teacher))
    if tokenizer is not None:
        config.vocab_size, config.pad_token_id = len(tokenizer), tokenizer.pad_token_id
    hidden_size = hidden_size or config.hidden_size
    num_heads = num_heads or config.num_attention_heads
    problems = []
    if num_layers < 1:
        problems.append(f"num_layers={num_layers}: expected >= 1")
    if hidden_size % num_heads:
        problems.append(f"hidden_size={hidden_size} is not divisible by num_heads={num_heads}")
    if problems:
        raise ValueError("; ".join(problems))
    config.num_hidden_layers = num_layers
    config.hidden_size = hidden_size
    config.num_attention_heads = num_heads
    config.intermediate_size = intermediate_size or 4 * hidden_size
    student = AutoModelForSequenceClassification.from_config(config)
    student.name_or_path = ""  # a new random model: it derives from no checkpoint (its card names no base model)
    return student


#: Config keys of rotary position schemes (their q/k are rotated inside attention, after the projections' outputs).
#: Encoder families whose attention is always rotary, whatever their config says.
ROTARY_MODEL_TYPES = ("roformer", "modernbert", "nomic_bert")
#: Config keys of rotary position schemes (q and k are rotated inside attention, after the projections).
ROTARY_CONFIG_KEYS = ("rope_theta", "rope_parameters", "rope_scaling", "rotary_emb_base", "rotary_dim", "rotary_pct")


def position_problem(config: object, role: str) -> str | None:
    """Why a model's attention cannot be recomputed from its captured queries and keys, or None when it can.

    The taps record the query/key projections' outputs, and attention losses recompute ``softmax(Q Kᵀ / √d)`` from
    them. That is the model's attention only with absolute position embeddings (added to the input before any
    layer). Relative position schemes (``position_embedding_type="relative_key"``/``"relative_key_query"``) add a
    position term to the scores, and rotary schemes rotate q and k inside attention, after the projections: the
    recomputed attention would silently differ from the model's.

    Args:
        config: A Hugging Face model config.
        role: ``"teacher"`` or ``"student"``, for the message.
    """
    kind = getattr(config, "position_embedding_type", None) or "absolute"
    rotary = [k for k in ROTARY_CONFIG_KEYS if getattr(config, k, None) not in (None, {}, 0)]
    if getattr(config, "model_type", None) in ROTARY_MODEL_TYPES:
        rotary.append(f"model_type={config.model_type!r}")
    if kind == "absolute" and not rotary:
        return None
    found = f"position_embedding_type={kind!r}" if kind != "absolute" else f"rotary settings {rotary}"
    return (
        f"the {role} ({getattr(config, 'model_type', '?')}) has {found}; attention adaptors and attention maps "
        "recompute softmax(Q Kᵀ/√d) from the captured query/key projections, which is the model's attention only "
        "with absolute position embeddings (relative terms are added to the scores and rotary ones rotate q/k "
        "inside attention). Use a model with position_embedding_type='absolute', or hidden-state/logit adaptors only"
    )
