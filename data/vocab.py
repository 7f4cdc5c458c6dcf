"""A student's own small vocabulary: a WordPiece tokenizer trained on the run's texts.

A 2-layer student that keeps its teacher's 30,522-token vocabulary spends most of its parameters on word embeddings
(11.7 M of the 15.6 M of MiniLM layers [0, 5]). A vocabulary trained on the task's own training and transfer texts
(``model.student: {..., vocab_size: 8000, tokenizer: train}``) cuts that to a fraction; the student then reads
other tokens than its teacher, which logit distillation allows (:mod:`data.teacher_outputs`, the data module
tokenizes every text for both).

The tokenizer is BERT's recipe (Devlin et al., 2019; WordPiece, Wu et al., 2016) built with the ``tokenizers``
library: BERT normalisation (lower case, accents stripped, CJK characters split), whitespace and punctuation
pre-tokenization, ``##`` continuation pieces, ``[CLS] ... [SEP]`` (``[CLS] a [SEP] b [SEP]`` for pairs) and the
special tokens ``[PAD]`` (id 0), ``[UNK]``, ``[CLS]``, ``[SEP]``, ``[MASK]``. It is wrapped as a
``BertTokenizerFast``, so ``save_pretrained`` / ``AutoTokenizer`` / ``pipeline()`` open it like any other.

The ``tokenizers`` trainer breaks ties between equally frequent pieces in no fixed order (two trainings on the same
texts can differ in a few pieces at the end of the vocabulary), so :func:`student_vocabulary` keeps each trained
vocabulary in the cache (``<cache_root()>/vocab/<digest of texts and settings>``): every run on the same texts reads
the same tokenizer, which makes runs repeatable and lets a run from precomputed teacher outputs match a live one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, BertTokenizerFast, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from data.teacher_store import cache_root

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
#: Smallest vocabulary accepted: the special tokens plus room for the characters of ordinary text.
MIN_VOCAB_SIZE = 100


def vocab_size_problems(vocab_size: object, field: str = "student.vocab_size (--model.student)") -> list[str]:
    """Why ``vocab_size`` cannot size a trained vocabulary (empty when it can)."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < MIN_VOCAB_SIZE:
        return [f"{field}={vocab_size!r}: expected an integer >= {MIN_VOCAB_SIZE} (e.g. 8000)"]
    return []


def train_wordpiece(
    texts: Iterable[str], vocab_size: int = 8000, lowercase: bool = True, min_frequency: int = 2
) -> PreTrainedTokenizerFast:
    """Train a BERT-style WordPiece tokenizer on ``texts``.

    Training is deterministic: the same texts (in any order) give the same vocabulary.

    Args:
        texts: The training texts (pairs flattened: each side is a text).
        vocab_size: Size of the vocabulary, special tokens included (fewer when the texts hold fewer pieces).
        lowercase: Lower-case and strip accents, like ``bert-base-uncased``.
        min_frequency: Pieces seen fewer times are not added.

    Returns:
        A ``BertTokenizerFast`` (``[PAD]`` is id 0).

    Raises:
        ValueError: ``vocab_size`` is not an integer >= 100.
    """
    problems = vocab_size_problems(vocab_size, "vocab_size")
    if problems:
        raise ValueError(problems[0])
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=lowercase, lowercase=lowercase
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        continuing_subword_prefix="##",
        show_progress=False,
    )
    tokenizer.train_from_iterator(sorted(set(texts)), trainer=trainer)  # sorted: the same vocabulary in any order
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return BertTokenizerFast(
        tokenizer_object=tokenizer,
        do_lower_case=lowercase,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def flatten_texts(rows: Sequence[str | tuple[str, str]]) -> list[str]:
    """Single texts as they are and both sides of pairs: what a vocabulary is trained on."""
    out: list[str] = []
    for row in rows:
        if isinstance(row, (tuple, list)):
            out.extend(row)
        else:
            out.append(row)
    return out


def student_vocabulary(
    texts: Iterable[str], vocab_size: int = 8000, lowercase: bool = True, min_frequency: int = 2
) -> PreTrainedTokenizerBase:
    """:func:`train_wordpiece` through the vocabulary cache: the tokenizer trained on these texts before, else anew.

    The key is a digest of the distinct texts (sorted) and the settings. A new tokenizer is saved to a temporary
    folder and renamed into place, so a reader never sees half a tokenizer; when two runs train the same one at once,
    the first rename wins and both read it.

    Args:
        texts: The training texts.
        vocab_size: Size of the vocabulary.
        lowercase: Lower-case and strip accents.
        min_frequency: Pieces seen fewer times are not added.
    """
    distinct = sorted(set(texts))
    digest = hashlib.sha1(f"wordpiece|{vocab_size}|{lowercase}|{min_frequency}|".encode())
    for text in distinct:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    folder = cache_root() / "vocab" / digest.hexdigest()
    if not (folder / "tokenizer.json").is_file():
        tokenizer = train_wordpiece(distinct, vocab_size, lowercase, min_frequency)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}")
        try:
            tokenizer.save_pretrained(tmp)
            try:
                os.replace(tmp, folder)
            except OSError:  # another run put it there first
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return AutoTokenizer.from_pretrained(folder)


def check_tokenizers(
    teacher_tokenizer: PreTrainedTokenizerBase, student_tokenizer: PreTrainedTokenizerBase, texts: Sequence[Any]
) -> None:
    """Check that two tokenizers encode the given texts identically (distillation needs aligned tokens).

    Args:
        teacher_tokenizer: The teacher's tokenizer.
        student_tokenizer: The student's tokenizer.
        texts: Single texts or ``(text_a, text_b)`` pairs, e.g. ``dm.texts("validation", limit=200)``.

    Raises:
        ValueError: Naming the first example that tokenizes differently and both token sequences.
    """
    for i, text in enumerate(texts):
        args = tuple(text) if isinstance(text, (tuple, list)) else (text,)
        a = teacher_tokenizer(*args)["input_ids"]
        b = student_tokenizer(*args)["input_ids"]
        if a != b:
            ta = teacher_tokenizer.convert_ids_to_tokens(a)
            tb = student_tokenizer.convert_ids_to_tokens(b)
            raise ValueError(
                f"teacher and student tokenizers disagree on example {i} {text!r}:\n  teacher: {ta}\n  student: {tb}\n"
                "expected identical token ids; distil into a student that shares the teacher's vocabulary"
            )
