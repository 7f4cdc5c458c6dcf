"""Where a distiller's teacher signal comes from, and which tokens each model reads.

- A teacher model (``model.teacher``) or precomputed teacher outputs carried by the data
  (:mod:`data.teacher_outputs`; ``model.teacher: null``): exactly one.
- The student reads the teacher's tokens, or its own (a trained vocabulary, ``model.student: {..., vocab_size:
  8000, tokenizer: train}``, or a saved student whose tokenizer encodes differently). Class logits do not depend
  on the tokenizer, so logit adaptors work either way: the teacher labels every row once in its own tokens (the
  teacher-logit store) and the student trains on its own. Intermediate adaptors compare the two models token by
  token and need the same tokens.

Every problem is reported at once before training, as a :class:`TeacherSourceError`, naming the flag. The
distiller's construction checks of the models themselves (:func:`check_model_labels`, :func:`check_student_vocab`)
live here too.
"""

from __future__ import annotations

import json
from typing import Any

from transformers import AutoConfig, BertConfig, PreTrainedModel, PreTrainedTokenizerBase

from adaptors import Adaptor
from common.errors import ProblemsError
from common.resolve import load_tokenizer, resolve_model_path
from data.data_module import ClfDataModule, check_tokenizers
from data.vocab import flatten_texts, student_vocabulary, vocab_size_problems
from helper.models import student_from_config
from helper.module import ClfModule

#: ``model.student`` keys of a student with its own vocabulary.
VOCAB_KEYS = ("vocab_size", "tokenizer")
DEFAULT_VOCAB_SIZE = 8000


class TeacherSourceError(ProblemsError):
    """The teacher, its precomputed outputs, the adaptors and the student's tokens do not fit together."""

    headline = "{n} problem(s) with the teacher and the student's tokens"


def own_vocabulary(spec: object) -> bool:
    """Whether a ``model.student`` recipe asks for a student with its own trained vocabulary."""
    return isinstance(spec, dict) and any(k in spec for k in VOCAB_KEYS)


def training_texts(dm: ClfDataModule) -> list[str]:
    """The run's training and transfer texts (both sides of pairs): what a student's vocabulary is trained on."""
    rows = [dm.raw["train"], *dm.transfer.values()]
    texts = [t for part in rows for t in zip(*(part[f] for f in dm.text_fields), strict=True)]
    return flatten_texts([t if len(t) > 1 else t[0] for t in texts])


def own_vocabulary_student(
    spec: dict[str, Any], dm: ClfDataModule | None, id2label: dict[int, str]
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A random student around its own WordPiece vocabulary, trained on the run's texts; the data module then gives
    the student its own tokens (:meth:`ClfDataModule.use_student_tokenizer`).

    The architecture is BERT's (``transformers.BertConfig`` defaults: GELU, 512 positions, LayerNorm eps 1e-12),
    or that of ``spec["from"]`` when given, with the recipe's ``num_layers``, ``hidden_size``, ``num_heads`` and
    ``intermediate_size``; the word embeddings are sized to the trained vocabulary.

    Args:
        spec: ``{num_layers, hidden_size, num_heads, [intermediate_size], vocab_size: 8000, tokenizer: train,
            [from]}``; ``tokenizer`` may instead be the folder of a saved tokenizer (e.g. the vocabulary another run
            trained, to train the same student alone).
        dm: The data module (its training and transfer texts).
        id2label: The class names.

    Raises:
        TeacherSourceError: Every problem of the recipe.
    """
    problems = []
    source = spec.get("tokenizer", "train")
    tokenizer = None
    if source == "train":
        vocab_size = spec.get("vocab_size", DEFAULT_VOCAB_SIZE)
        problems.extend(vocab_size_problems(vocab_size))
    elif not isinstance(source, str):
        problems.append(
            f"student.tokenizer (--model.student)={source!r}: expected 'train' (a WordPiece vocabulary trained on the "
            "run's texts) or the folder of a saved tokenizer"
        )
    else:
        if "vocab_size" in spec:
            problems.append(
                f"student.vocab_size (--model.student)={spec['vocab_size']!r} sizes a trained vocabulary, but "
                f"student.tokenizer={source!r} is a saved one; expected tokenizer: train, or no vocab_size"
            )
        try:
            tokenizer = load_tokenizer(source)
        except (OSError, ValueError) as err:
            problems.append(f"student.tokenizer (--model.student)={source!r}: {err}")
    if "layers" in spec:
        problems.append(
            "student.layers (--model.student) cuts teacher layers, which read the teacher's vocabulary; a student "
            "with its own vocabulary is random: expected num_layers (with hidden_size, num_heads) instead"
        )
    elif "num_layers" not in spec:
        problems.append("student (--model.student) with its own vocabulary: expected num_layers (and hidden_size)")
    if dm is None:
        problems.append("a student with its own vocabulary needs the data module (dm) to tokenize the data")
    if problems:
        raise TeacherSourceError(problems)
    config = AutoConfig.from_pretrained(resolve_model_path(spec["from"])) if "from" in spec else BertConfig()
    config.num_labels = len(id2label)
    config.id2label, config.label2id = dict(id2label), {v: k for k, v in id2label.items()}
    if tokenizer is None:
        texts = training_texts(dm)
        tokenizer = student_vocabulary(texts, vocab_size)
        dm._note(
            f"student vocabulary: {len(tokenizer):,} WordPiece tokens trained on {len(texts):,} training and transfer "
            f"texts, kept at {tokenizer.name_or_path} (give that folder as student.tokenizer to reuse it)"
        )
    dm.use_student_tokenizer(tokenizer)
    student = student_from_config(
        config,
        spec["num_layers"],
        spec.get("hidden_size"),
        spec.get("num_heads"),
        spec.get("intermediate_size"),
        tokenizer=tokenizer,
    )
    return student, tokenizer


def check_teacher_source(
    teacher: PreTrainedModel | None,
    student_spec: object,
    dm: ClfDataModule | None,
    adaptors: list[Adaptor],
    attention_maps: bool,
    cache_teacher_outputs: bool,
) -> None:
    """Check that the teacher signal, the adaptors and the student's tokens fit; switch the data module to the
    student's own tokens when a saved student's tokenizer encodes differently and only logits are distilled.

    Raises:
        TeacherSourceError: Every problem found, each naming its flag.
    """
    problems = []
    inter = [a.name for a in adaptors if a.needs - {"logits"}]
    outputs = dm is not None and dm.outputs.active
    if teacher is None and not outputs:
        problems.append(
            "model.teacher (--model.teacher) is null but the data carries no teacher outputs; expected a teacher "
            "model, or precomputed outputs: --data.teacher_outputs FILE (label.py writes one) or a "
            "teacher_logits / teacher_probs column (--data.teacher_outputs_field)"
        )
    if teacher is not None and outputs:
        problems.append(
            f"both a teacher model (--model.teacher={getattr(teacher, 'name_or_path', type(teacher).__name__)!r}) "
            f"and precomputed teacher outputs ({'; '.join(dm.outputs.sources)}) are given; expected one of them: "
            "--model.teacher null to distil from the outputs, or no --data.teacher_outputs (and no outputs column)"
        )
    if teacher is None:
        if inter:
            problems.append(
                f"model.adaptors (--model.adaptors) {inter} compare the teacher's internals, which precomputed "
                "teacher outputs do not have; expected logit adaptors only (e.g. LogitKD, LogitMSE) or a teacher model"
            )
        if attention_maps:
            problems.append("model.attention_maps (--model.attention_maps)=true needs a teacher model; expected false")
        if dm is not None and dm.augment is not None:
            problems.append(
                "data.augment (--data.augment) makes copies from the teacher model's word embeddings; with "
                "precomputed teacher outputs expected --data.augment null"
            )
    if own_vocabulary(student_spec):
        needs = [*inter, *(["attention_maps (--model.attention_maps)"] if attention_maps else [])]
        if needs:
            problems.append(
                f"{needs} compare teacher and student token by token, but the student reads its own tokens "
                "(--model.student tokenizer: train); expected logit adaptors only, or a student with the teacher's "
                "vocabulary"
            )
    elif isinstance(student_spec, str) and dm is not None and teacher is not None:
        student_tokenizer = load_tokenizer(student_spec)
        try:
            check_tokenizers(dm.tokenizer, student_tokenizer, dm.texts("train", limit=200))
        except ValueError as err:
            if inter or attention_maps:
                named = [*inter, *(["attention_maps"] if attention_maps else [])]
                problems.append(f"model.adaptors (--model.adaptors) {named} need the same tokens: {err}")
            else:
                dm.use_student_tokenizer(student_tokenizer)
    differ = dm is not None and dm.teacher_tokenizer is not None
    if differ and teacher is not None and not cache_teacher_outputs:
        problems.append(
            "model.cache_teacher_outputs (--model.cache_teacher_outputs)=false, but the student reads other tokens "
            "than the teacher: the teacher labels every row once, in its own tokens, before training; expected true"
        )
    if problems:
        raise TeacherSourceError(problems)


def check_model_labels(model: PreTrainedModel, role: str, dm: ClfDataModule | None) -> None:
    """The model's label count matches the data's; a teacher's class names, when it has real ones, too.

    A teacher trained on ``NOT``/``OFF`` and data whose names come in another order (``["OFF", "NOT"]``) would
    distil swapped classes without any error, so the names and their order must agree unless one side only has
    the default ``LABEL_i`` names.
    """
    ClfModule.check_label_count(model, role, dm)
    if dm is None or role != "teacher":
        return
    names = [str(model.config.id2label.get(i, f"LABEL_{i}")) for i in range(model.config.num_labels)]
    data_names = [str(n) for n in dm.label_names]
    default = [f"LABEL_{i}" for i in range(len(names))]
    if names != default and data_names != default and names != data_names:
        raise ValueError(
            f"teacher has class names {names} (config.id2label) but the data's label names (--data.label_names) "
            f"are {data_names}; expected the same names in the same order, e.g. "
            f"--data.label_names '{json.dumps(names)}'"
        )


def check_student_vocab(
    teacher: PreTrainedModel | None, student: PreTrainedModel, spec: Any, dm: ClfDataModule | None
) -> None:
    """The student reads the teacher's vocabulary unless it brings its own tokenizer (see
    :func:`check_teacher_source`), and has the teacher's label count."""
    if teacher is None:
        return
    own_tokens = own_vocabulary(spec) or (isinstance(spec, str) and dm is not None)
    if not own_tokens and teacher.config.vocab_size != student.config.vocab_size:
        raise ValueError(
            f"student vocab_size={student.config.vocab_size} differs from the teacher's "
            f"{teacher.config.vocab_size}; expected a student that shares the teacher's tokenizer"
        )
    if teacher.config.num_labels != student.config.num_labels:
        raise ValueError(
            f"student num_labels={student.config.num_labels} differs from the teacher's "
            f"{teacher.config.num_labels}; expected the same label count"
        )
