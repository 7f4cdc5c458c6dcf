"""Word-replacement copies labelled with the teacher's predicted class, merged into the labelled training split.

This is the augmentation recipe as it was before transfer sets (``data.augment`` on :class:`ClfDataModule`, whose
copies carry the teacher's logits and no label): each copy gets the teacher's top class as a hard label, so it also
trains the cross-entropy term. ``benchmarks/distill_compare.py`` keeps it as its ``aug_kd`` variant for comparison.
"""

from __future__ import annotations

from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from data.augment import Augment, augment_problems, word_replacement_copies, words_per_row
from data.data_module import ClfDataModule
from data.teacher_store import teacher_logits


def teacher_labels(
    teacher: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list, max_length: int, batch_size: int = 128
) -> list[int]:
    """The teacher's predicted class for each text (or text pair).

    The texts are tokenized as :class:`ClfDataModule` tokenizes them and their logits go through
    :func:`data.teacher_store.teacher_logits`, so a data module that later holds the same texts (an augmented training
    set) reads them from the teacher's store instead of running the teacher again.
    """
    if not texts:
        return []
    columns = [list(c) for c in zip(*texts, strict=True)] if isinstance(texts[0], tuple) else [texts]
    enc = tokenizer(*columns, truncation=True, max_length=max_length)
    rows = Dataset.from_dict({k: enc[k] for k in ("input_ids", "token_type_ids") if k in enc})
    return teacher_logits(teacher, rows, batch_size, tokenizer.pad_token_id or 0).argmax(-1).tolist()


def augment_with_teacher(
    dm: ClfDataModule,
    teacher: PreTrainedModel,
    copies: int = 4,
    p: float = 0.3,
    k: int = 10,
    seed: int = 42,
    min_words: int = 0,
) -> DatasetDict:
    """The data module's training split plus ``copies`` teacher-labelled word-replacement copies of its examples.

    ``min_words`` restricts the copies to examples of at least that many words (all text fields together), for data
    whose training texts are shorter than those it is evaluated on (GLUE SST-2 trains on phrases of 9.4 words on
    average and validates on sentences of 19.5). On SST-2 it did not help: 8 copies of the examples of >= 15 words cost
    0.81 points at one epoch (README, "Distillation recipes on the full SST-2 training set").

    Args:
        dm: Source data (its text fields, label names, tokenizer and max length are used).
        teacher: Fine-tuned teacher that labels the copies and provides the embedding neighbours.
        copies: Augmented copies per training example.
        p: Probability of replacing each eligible word.
        k: Nearest neighbours considered per word.
        seed: Seed of the replacement choices.
        min_words: Copy only examples with at least this many words (0: every example).

    Returns:
        A ``DatasetDict`` (``train`` = originals + copies, ``validation`` unchanged) with the data module's fields.

    Raises:
        ValueError: ``copies < 1``, ``p`` outside (0, 1], ``k < 1``, ``min_words < 0`` or no example long enough.
    """
    settings = Augment(copies=copies, p=p, k=k, min_words=min_words, seed=seed)
    problems = augment_problems(settings, field=None)
    if teacher.config.num_labels != dm.num_labels:
        problems.append(f"teacher num_labels={teacher.config.num_labels}: expected the data's {dm.num_labels} classes")
    if problems:
        raise ValueError("; ".join(problems))
    train = dm.raw["train"]
    fields, label_field = dm.text_fields, dm.label_field
    if not any(n >= min_words for n in words_per_row(train, fields)):
        raise ValueError(f"min_words={min_words}: no training example has that many words; expected a smaller value")
    embeddings = teacher.get_input_embeddings().weight.detach()
    new = word_replacement_copies(train, fields, dm.tokenizer, embeddings, settings)
    texts = new[fields[0]] if len(fields) == 1 else list(zip(*(new[f] for f in fields), strict=True))
    labels = teacher_labels(teacher, dm.tokenizer, texts, dm.max_length)
    features = Features({**{f: Value("string") for f in fields}, label_field: ClassLabel(names=dm.label_names)})
    original = {f: list(train[f]) for f in fields}
    merged = {f: original[f] + new[f] for f in fields}
    merged[label_field] = list(train[label_field]) + labels
    val = dm.raw["validation"]
    validation = {f: list(val[f]) for f in fields} | {label_field: list(val[label_field])}
    return DatasetDict(
        train=Dataset.from_dict(merged, features=features), validation=Dataset.from_dict(validation, features=features)
    )
