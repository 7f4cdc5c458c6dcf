"""``ClfDataModule``: any classification data source in, tokenized length-grouped batches out."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import pytorch_lightning as pl
import torch
from datasets import Dataset, DatasetDict, concatenate_datasets
from pytorch_lightning.utilities import rank_zero_info
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, PreTrainedModel, PreTrainedTokenizerBase

from data.augment import (  # noqa: F401 (augment_problems, word_replacement_copies, words_per_row: public here before)
    Augment,
    augment_problems,
    word_replacement_copies,
    words_per_row,
)
from data.balance import Balance, balanced_indices, class_repeats, describe_balance
from data.labels import (  # noqa: F401 (label_name_problems, sorted_label_names: public names of this module before)
    SINGLE_LABEL,
    LabelNames,
    label_count_problems,
    label_name_problems,
    label_problems,
    resolve_label_names,
    sorted_label_names,
)
from data.loading import LengthGroupedSampler, ResumableDataLoader
from data.sources import (  # noqa: F401 (LABEL_FIELDS: public here before)
    LABEL_FIELDS,
    DataError,
    DataSource,
    detect_label_field,
    detect_text_fields,
    load_source,
    names_beside,
)
from data.splits import check_splits, select_splits, setting_problems, take_samples
from data.targets import missing_targets, normalise_targets, problem_type_problems, target_feature, to_targets
from data.teacher_outputs import TEACHER_LOGITS, TeacherOutputs, teacher_rows, teacher_token_rows  # noqa: F401
from data.teacher_store import (  # noqa: F401 (re-exported: the store's public names were defined here before)
    LabelStats,
    cache_root,
    label_rows,
    model_fingerprint,
    row_digests,
    teacher_logits,
)
from data.transfer import (
    TransferLoader,
    augment_copies,
    augment_row_count,
    augment_sources,
    describe_rows,
    parse_augment,
    parse_balance,
)
from data.transfer import source_name as _source_name
from data.transfer import text_features as _text_features  # noqa: F401 (defined here before)
from data.vocab import check_tokenizers  # noqa: F401 (public name of this module before)

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
#: Label of transfer rows (no label): the ignore index of ``torch.nn.functional.cross_entropy``.
IGNORE_INDEX = -100


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The entries of a batch that a Hugging Face encoder takes (no labels, no cached teacher outputs)."""
    return {k: v for k, v in batch.items() if k in MODEL_INPUTS}


def _batch_columns(rows: Dataset) -> Dataset:
    """``rows`` as torch tensors of the columns a batch carries: model inputs, labels, cached teacher logits."""
    return rows.with_format(
        "torch", columns=[c for c in (*MODEL_INPUTS, "labels", TEACHER_LOGITS) if c in rows.column_names]
    )


def tokenize_batch(
    batch: dict[str, list],
    tokenizer: PreTrainedTokenizerBase,
    text_fields: list[str],
    label_field: str,
    max_length: int,
) -> dict[str, list]:
    """Tokenize a batch of rows (truncation only; padding happens per training batch) and copy the labels.

    A plain function of its arguments, so ``datasets`` fingerprints (and caches) the result by data, tokenizer,
    fields and ``max_length`` only.
    """
    enc = tokenizer(*(batch[f] for f in text_fields), truncation=True, max_length=max_length)
    enc["labels"] = batch[label_field]
    return enc


class ClfDataModule(pl.LightningDataModule):
    """Text classification data for fine-tuning and distillation.

    Loads the data at construction, detects the text field(s) and the label field, checks every split, and knows the
    label set, so that a bad data set fails before any model is built. Tokenization happens in ``setup`` and is
    cached by ``datasets`` for file-backed data.

    Args:
        dataset: A ``DatasetDict``, ``"demo"``, a local folder, a file, a ``{split: file}`` mapping, or a Hub name.
        tokenizer: Tokenizer object, Hub name, local path or alias (``"minilm"``).
        subset: Hub dataset configuration, e.g. ``"sst2"`` for ``"glue"``.
        text_fields: Override for the text column(s); one name or a pair.
        label_field: Override for the label column.
        label_names: Names of the classes, in label order (default: from a ``ClassLabel`` feature, the sorted values
            of a string label column, else ``LABEL_i``). String labels are mapped to ids in this order. Every entry
            must be a string: on the command line quote them, ``--data.label_names '["NOT", "OFF"]'`` (YAML reads
            an unquoted ``OFF`` as ``False``).
        num_labels: Number of classes (default: from ``label_names`` / ``ClassLabel``, else largest label + 1).
        problem_type: ``single_label_classification``, ``multi_label_classification`` (a list of class ids or a
            multi-hot vector per example; an empty list means none of the labels) or ``regression`` (one number per
            example); default: detected from the label column (:func:`data.labels.normalise_targets`). Class names
            also come from a ``label_names.json`` beside local data files.
        train_split: Name of the training split.
        val_split: Name of the validation split; created from train (seeded) when absent.
        test_split: Optional test split name (unlabelled test sets, e.g. GLUE's ``-1`` labels, are allowed).
        val_fraction: Fraction of train held out when there is no validation split.
        max_length: Truncation length in tokens.
        batch_size: Training batch size.
        eval_batch_size: Evaluation batch size (default: ``2 * batch_size``).
        max_train_samples: Use a seeded random subset of this many training examples (seed: ``sample_seed``).
        max_eval_samples: Use the first this many validation examples.
        group_by_length: Length-grouped training batches and length-sorted evaluation batches.
        num_workers: DataLoader worker processes.
        seed: Seed for the validation split, subsets and batch order.
        sample_seed: Seed of the ``max_train_samples`` subset alone (default: ``seed``), so that runs with other
            seeds (batch order) can keep one labelled sample, e.g. the one a teacher was fine-tuned on.
        unlabeled: Unlabelled in-domain text for the transfer set (distillation only): any source ``dataset``
            accepts. Its rows join the training split with no label (``-100``, the cross-entropy's ignore index), and
            the teacher labels them (:meth:`add_teacher_logits`). Its text fields are the labelled data's when it has
            them, else detected (``text``, ``sentence``, ...; a pair for pair tasks); a label column in it is ignored,
            and so are rows whose text is also in the validation or test split.
        unlabeled_subset: Hub dataset configuration of ``unlabeled``.
        unlabeled_split: Split of ``unlabeled`` to use (default: ``train``, or its only split).
        unlabeled_text_fields: Override for the text column(s) of ``unlabeled`` (one name or a pair).
        max_unlabeled_samples: Use a seeded random subset of this many unlabelled rows.
        rest_as_unlabeled: With ``max_train_samples``, the training rows left out of the labelled sample join the
            transfer set, without their labels (a low-label setting such as 1,000 labels of SST-2 plus the rest as
            unlabelled text).
        min_transfer_words: Keep only the ``unlabeled`` and ``rest_as_unlabeled`` rows of at least this many words,
            all text fields together (e.g. sentence-length text when the labelled rows are short phrases); the rows
            are dropped before ``max_unlabeled_samples`` takes its sample. Augmented copies have ``augment.min_words``.
        augment: Word-replacement copies of the labelled training rows (``rows: all``: and of the transfer rows) as
            transfer rows (:class:`Augment`: ``copies``, ``p``, ``k``, ``min_words``, ``seed``, ``rows``); built with
            the teacher's word embeddings when a distiller attaches its teacher (:meth:`prepare_transfer`), labelled by
            the teacher like ``unlabeled``.
        balance: Repeat the transfer rows of the classes the teacher rarely predicts (:class:`data.balance.Balance`:
            ``power``, ``max_repeats``; single-label classification): each transfer row appears
            ``round((n_max / n_c) ** power)`` times (at most ``max_repeats``), ``n_c`` being how many transfer rows
            have its teacher top class. Applied once the teacher has labelled the transfer rows, before training.
        teacher_outputs: JSON Lines file(s) of precomputed teacher outputs (``label.py`` writes them), so that no
            teacher model is needed (:mod:`data.teacher_outputs`: format, checks). An outputs column inside the data
            (``teacher_logits`` / ``teacher_probs``) is read without this.
        teacher_outputs_field: Name of the outputs field (default: ``teacher_logits`` or ``teacher_probs``).
        teacher_outputs_kind: ``logits`` or ``probs`` for a field of another name (default ``logits``).
        teacher_outputs_key: Join the files to the data by ``text`` (default) or by this id column.
    """

    def __init__(
        self,
        dataset: DataSource = "demo",
        tokenizer: str | PreTrainedTokenizerBase | None = None,
        subset: str | None = None,
        text_fields: str | list[str] | None = None,
        label_field: str | None = None,
        label_names: LabelNames | None = None,
        num_labels: int | None = None,
        problem_type: str | None = None,
        train_split: str = "train",
        val_split: str = "validation",
        test_split: str | None = None,
        val_fraction: float = 0.1,
        max_length: int = 128,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        max_train_samples: int | None = None,
        max_eval_samples: int | None = None,
        group_by_length: bool = True,
        num_workers: int = 0,
        seed: int = 42,
        sample_seed: int | None = None,
        unlabeled: DataSource | None = None,
        unlabeled_subset: str | None = None,
        unlabeled_split: str | None = None,
        unlabeled_text_fields: str | list[str] | None = None,
        max_unlabeled_samples: int | None = None,
        rest_as_unlabeled: bool = False,
        min_transfer_words: int | None = None,
        augment: Augment | None = None,
        balance: Balance | None = None,
        teacher_outputs: str | list[str] | None = None,
        teacher_outputs_field: str | None = None,
        teacher_outputs_kind: str | None = None,
        teacher_outputs_key: str = "text",
    ) -> None:
        super().__init__()
        counts = {"max_length": max_length, "batch_size": batch_size, "eval_batch_size": eval_batch_size}  # ints >= 1
        counts |= {"max_train_samples": max_train_samples, "max_eval_samples": max_eval_samples}
        counts |= {"num_labels": num_labels, "max_unlabeled_samples": max_unlabeled_samples}
        counts |= {"min_transfer_words": min_transfer_words}
        problems = setting_problems(val_fraction, counts, sample_seed, rest_as_unlabeled)
        problems.extend(label_name_problems(label_names))
        problems.extend(problem_type_problems(problem_type))
        augment, found = parse_augment(augment)
        problems.extend(found)
        balance, found = parse_balance(balance)
        problems.extend(found)
        if problems:
            raise DataError(problems)
        self.save_hyperparameters(ignore=["dataset", "tokenizer", "unlabeled", "augment", "balance"])
        self.hparams["unlabeled"] = None if unlabeled is None else _source_name(unlabeled)
        self.hparams["augment"] = None if augment is None else dataclasses.asdict(augment)
        self.hparams["balance"] = None if balance is None else dataclasses.asdict(balance)
        self.augment = augment
        self.balance = balance
        self._balanced_rows: int | None = None  # transfer rows once balanced (known after the teacher labelled them)
        self._augment_rows: int | None = None  # counted on first use: a pass over every row that augment copies
        self.label_stats: dict[str, LabelStats] = {}  # per split, from the last add_teacher_logits
        self.notes: list[str] = []  # what the data module said about its data (also logged), e.g. ignored columns
        self.source_name = dataset if isinstance(dataset, str) else type(dataset).__name__
        self.tokenizer_source = tokenizer
        self._tokenizer = tokenizer if isinstance(tokenizer, PreTrainedTokenizerBase) else None
        self.max_length = max_length
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or 2 * batch_size
        self.group_by_length = group_by_length
        self.num_workers = num_workers
        self.seed = seed
        self.test_split = test_split

        raw = load_source(dataset, subset)
        self.raw = select_splits(raw, train_split, val_split, test_split, val_fraction, seed)
        columns = self.raw["train"].column_names
        self.text_fields = detect_text_fields(columns, text_fields)
        self.label_field = detect_label_field(columns, label_field)
        #: Label kind of every split as loaded (:func:`data.sources.label_kind`), e.g. for error reports and tests.
        if label_names is None:
            label_names = names_beside(dataset)
        info = normalise_targets(self.raw, self.label_field, label_names, problem_type, num_labels)
        self.label_kinds, self.problem_type = info.kinds, info.problem_type
        for note in info.notes:
            self._note(note)
        self.label_names = resolve_label_names(self.raw, self.label_field, label_names, num_labels, self.problem_type)
        check_splits(self.raw, self.text_fields, self.label_field, self.num_labels, self.problem_type)
        #: Precomputed teacher outputs (empty, ``active`` False, when the data carries none).
        self.outputs = TeacherOutputs(
            teacher_outputs,
            teacher_outputs_field,
            teacher_outputs_kind,
            teacher_outputs_key,
            self.num_labels,
            self.problem_type,
        )
        self.outputs.collect_splits(self.raw, self.text_fields)
        self.teacher_tokenizer: PreTrainedTokenizerBase | None = None  # set when the student reads its own tokens
        rest = take_samples(self.raw, max_train_samples, max_eval_samples, seed if sample_seed is None else sample_seed)
        #: Transfer rows by origin (``unlabeled``, ``rest``, later ``augment``): text fields only, no label.
        self.transfer: dict[str, Dataset] = TransferLoader(
            self.raw, self.text_fields, self.label_field, seed, self.outputs, self._note
        ).load(
            unlabeled,
            unlabeled_subset,
            unlabeled_split,
            unlabeled_text_fields,
            max_unlabeled_samples,
            rest if rest_as_unlabeled else None,
            rest_as_unlabeled,
            max_train_samples,
            self.augment,
            min_transfer_words,
        )
        self._check_balance()
        self.outputs.check_rows(self.raw, self.transfer, self.text_fields)
        if self.outputs.active:
            self._note(self.outputs.describe())
        self.tokenized: DatasetDict | None = None
        self._tokenized_train: Dataset | None = None  # the labelled training rows, tokenized
        self._tokenized_transfer: dict[str, Dataset] = {}

    # ------------------------------------------------------------------ label set
    @property
    def num_labels(self) -> int:
        """Number of classes."""
        return len(self.label_names)

    @property
    def id2label(self) -> dict[int, str]:
        """Class index to name, as Hugging Face configs store it."""
        return dict(enumerate(self.label_names))

    @property
    def label2id(self) -> dict[str, int]:
        """Class name to index."""
        return {name: i for i, name in enumerate(self.label_names)}

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        """The tokenizer, loaded on first use from a name, path or alias."""
        if self._tokenizer is None:
            if self.tokenizer_source is None:
                raise ValueError("tokenizer=None: expected a tokenizer object, Hub name, local path or 'minilm'")
            from common.resolve import load_tokenizer

            self._tokenizer = load_tokenizer(self.tokenizer_source)
        return self._tokenizer

    # ------------------------------------------------------------------ transfer set
    def _note(self, message: str) -> None:
        """Keep and log a remark about the data (shown once, on the main process)."""
        self.notes.append(message)
        rank_zero_info(message)

    def _check_balance(self) -> None:
        """Refuse ``balance`` where it has nothing to balance or no single class per row to balance on."""
        if self.balance is None:
            return
        problems = []
        if self.problem_type != SINGLE_LABEL:
            problems.append(
                f"balance (--data.balance)={dataclasses.asdict(self.balance)} repeats transfer rows by the teacher's "
                f"top class, but problem_type={self.problem_type!r} has none; expected single_label_classification "
                "data, or --data.balance null"
            )
        if not self.transfer and self.augment is None:
            problems.append(
                f"balance (--data.balance)={dataclasses.asdict(self.balance)} repeats transfer rows, but the run has "
                "none; expected a transfer set (--data.unlabeled, --data.rest_as_unlabeled or --data.augment), or "
                "--data.balance null"
            )
        if problems:
            raise DataError(problems)

    @property
    def transfer_sources(self) -> list[str]:
        """The transfer sources configured (``unlabeled``, ``rest_as_unlabeled``, ``augment``); empty: none."""
        out = []
        if "unlabeled" in self.transfer:
            out.append("unlabeled")
        if "rest" in self.transfer:
            out.append("rest_as_unlabeled")
        if self.augment is not None:
            out.append("augment")
        return out

    def augment_rows(self) -> int:
        """How many augmented copies the training split gets (known before they are made; counted once)."""
        if self._augment_rows is None:
            self._augment_rows = augment_row_count(self._augment_sources(), self.text_fields, self.augment)
        return self._augment_rows

    def _augment_sources(self) -> Dataset:
        """The rows ``augment`` copies: the labelled training rows (and the transfer rows with ``rows: all``)."""
        return augment_sources(self.raw["train"], self.transfer, self.text_fields, self.augment)

    def transfer_rows(self) -> int:
        """Transfer rows in the training split: unlabelled rows, left-out training rows and augmented copies (with
        ``balance``: repeated, once the teacher has labelled them)."""
        if self._balanced_rows is not None:
            return self._balanced_rows
        return sum(len(rows) for name, rows in self.transfer.items() if name != "augment") + self.augment_rows()

    def train_rows(self) -> dict[str, int]:
        """Rows the training split holds: ``{"labeled": ..., "transfer": ...}``."""
        return {"labeled": len(self.raw["train"]), "transfer": self.transfer_rows()}

    def describe_train_rows(self) -> str:
        """One log line: labelled and transfer rows, the transfer rows by origin."""
        augment_rows = None if self.augment is None else self.augment_rows()
        line = describe_rows(len(self.raw["train"]), self.transfer, augment_rows)
        if self._balanced_rows is not None:
            line += f"; {self._balanced_rows:,} transfer rows once balanced on the teacher's top class"
        return line

    def prepare_transfer(self, teacher: PreTrainedModel) -> None:
        """Make the teacher-dependent transfer rows: the ``augment`` copies (from the teacher's word embeddings).

        Called by a distiller before training (:meth:`add_teacher_logits` calls it too); doing nothing when there is
        no ``augment`` or the copies exist already.

        Args:
            teacher: The teacher, whose input word embeddings give each word's neighbours.
        """
        if self.augment is None or "augment" in self.transfer:
            return
        tokenizer = self.teacher_tokenizer or self.tokenizer
        self.transfer["augment"] = augment_copies(
            self._augment_sources(), self.text_fields, tokenizer, teacher, self.augment
        )
        if self.tokenized is not None:
            self._tokenized_transfer["augment"] = self._tokenize(self.transfer["augment"], "augment", transfer=True)
            self._compose_train()
        self._teacher_key = None  # the training split changed

    # ------------------------------------------------------------------ tokenization and loaders
    def prepare_data(self) -> None:
        """Tokenize once on the main process so that other processes reuse the ``datasets`` cache."""
        self.setup()

    def setup(self, stage: str | None = None) -> None:
        """Tokenize every split (truncation only; padding happens per batch); transfer rows join ``train``."""
        if self.tokenized is not None:
            return
        tokenized = {split: self._tokenize(ds, split) for split, ds in self.raw.items()}
        self._tokenized_train = tokenized["train"]
        self._tokenized_transfer = {n: self._tokenize(ds, n, transfer=True) for n, ds in self.transfer.items()}
        self.tokenized = DatasetDict(tokenized)
        self._compose_train()
        rank_zero_info(self.describe_train_rows())

    def _tokenize(self, ds: Dataset, name: str, transfer: bool = False) -> Dataset:
        """Tokenized rows with their ``labels`` (``-100`` for transfer rows, which have none)."""
        if transfer:  # no label: -100 class ids, NaN multi-label or regression targets
            values, feature = missing_targets(len(ds), self.problem_type, self.num_labels)
            ds = ds.add_column(self.label_field, values, feature=feature)
        else:
            ds = to_targets(ds, self.label_field, self.problem_type, self.num_labels)
        out = ds.map(
            tokenize_batch,
            batched=True,
            remove_columns=ds.column_names,
            desc=f"Tokenizing {name}",
            fn_kwargs={
                "tokenizer": self.tokenizer,
                "text_fields": self.text_fields,
                "label_field": self.label_field,
                "max_length": self.max_length,
            },
        )
        if out.features["labels"] != target_feature(self.problem_type, self.num_labels):
            out = out.cast_column("labels", target_feature(self.problem_type, self.num_labels))
        if self.outputs.active:  # precomputed teacher outputs ride along as the cached teacher logits
            out = out.add_column(TEACHER_LOGITS, self.outputs.logits(ds, self.text_fields))
        return _batch_columns(out)

    def _compose_train(self, balance: bool = True) -> None:
        """The tokenized training split: the labelled rows, then every transfer part (balanced when the rows carry
        teacher outputs and ``balance`` is set, unless ``balance`` is False here)."""
        parts = [self._tokenized_train, *self._tokenized_transfer.values()]
        self._balanced_rows = None
        if len(parts) == 1:
            self.tokenized["train"] = parts[0]
            return
        columns = [c for c in (*MODEL_INPUTS, "labels", TEACHER_LOGITS) if c in parts[0].column_names]
        merged = concatenate_datasets([p.with_format(None).select_columns(columns) for p in parts])
        self.tokenized["train"] = _batch_columns(merged)
        if balance and TEACHER_LOGITS in columns:
            self._balance_train()

    def _balance_train(self) -> None:
        """Repeat the transfer rows of the training split by their teacher top class (``balance``; no-op without)."""
        if self.balance is None:
            return
        train = self.tokenized["train"].with_format(None)
        labeled = len(self._tokenized_train)
        top = torch.tensor(train.select(range(labeled, len(train)))[TEACHER_LOGITS]).argmax(-1).tolist()
        counts, repeats = class_repeats(top, self.num_labels, self.balance)
        indices = balanced_indices(labeled, top, repeats)
        self.tokenized["train"] = _batch_columns(train.select(indices))
        self._balanced_rows = len(indices) - labeled
        self._note(describe_balance(counts, repeats, self.label_names))

    def add_teacher_logits(
        self,
        teacher: PreTrainedModel,
        batch_size: int = 256,
        device: torch.device | str | None = None,
        progress: bool = True,
        splits: Sequence[str] | None = None,
    ) -> None:
        """Give every split (or ``splits``) a ``teacher_logits`` column with the teacher's logits, computed at most
        once per example.

        The transfer rows are made first (:meth:`prepare_transfer`). The logits come from
        :func:`data.teacher_store.label_rows`: rows whose tokens the same teacher has already seen (in any data
        module, run or augmentation pass) are read from its on-disk store, only the others run through the teacher
        (under DDP, each process its share). Calling it again with the same teacher labels only the splits it has not
        labelled yet. Prints, per split, how many rows the teacher labelled, how many were read from the store, and
        the labelling throughput.

        Args:
            teacher: The (frozen) teacher classifier.
            batch_size: Inference batch size.
            device: Where the teacher runs while labelling (default: where it is).
            progress: Show a progress bar while the teacher labels rows.
            splits: The splits to label (default: all). The student trained alone compares no teacher outputs in
                training: its run labels only the evaluation splits, for the teacher's metrics.
        """
        self.prepare_transfer(teacher)
        self.setup()
        teacher_key = model_fingerprint(teacher)
        if getattr(self, "_teacher_key", None) != teacher_key:  # a new teacher, or rows changed since
            self._teacher_key, self._teacher_splits = teacher_key, set()
        wanted = [s for s in self.tokenized if (splits is None or s in splits) and s not in self._teacher_splits]
        tokenizer = self.teacher_tokenizer or self.tokenizer
        if self.balance is not None and "train" in wanted:  # the teacher labels each transfer row once: unbalanced
            self._compose_train(balance=False)
        for split in wanted:
            ds = self.tokenized[split]
            base = ds.remove_columns(TEACHER_LOGITS) if TEACHER_LOGITS in ds.column_names else ds
            rows = base  # what the teacher reads: these rows, or the same texts in its own tokens
            if self.teacher_tokenizer is not None:
                rows = teacher_rows(self.raw, self.transfer, split, tokenizer, self.text_fields, self.max_length)
            logits, stats = label_rows(
                teacher,
                rows,
                batch_size,
                tokenizer.pad_token_id or 0,
                teacher_key,
                device=device,
                progress=progress,
                desc=f"Teacher labelling {split}",
            )
            self.label_stats[split] = stats
            rank_zero_info(stats.summary(f"{split} rows"))
            self.tokenized[split] = _batch_columns(base.with_format(None).add_column(TEACHER_LOGITS, logits.tolist()))
            self._teacher_splits.add(split)
        if "train" in wanted:
            self._balance_train()

    def use_student_tokenizer(self, tokenizer: PreTrainedTokenizerBase) -> None:
        """Let the student read its own tokens: model inputs come from ``tokenizer`` (also saved with the student),
        while the teacher labels the same texts in its own tokens (``teacher_tokenizer``) in :meth:`add_teacher_logits`.
        """
        if self.teacher_tokenizer is None and self.tokenizer_source is not None:
            self.teacher_tokenizer = self.tokenizer
        self._tokenizer, self.tokenized, self._teacher_key = tokenizer, None, None

    def lengths(self, split: str) -> list[int]:
        """Token counts of a tokenized split."""
        self.setup()
        return [len(ids) for ids in self.tokenized[split].with_format(None)["input_ids"]]

    def _batches_done_this_epoch(self) -> int:
        """Training batches of the current epoch already trained: 0 at a normal epoch start, more after a resume.

        Asked by the sampler when an epoch's iteration starts; Lightning has then restored (or reset) its progress
        counters, so a run resumed from a mid-epoch checkpoint continues with exactly the batches it had not seen.
        """
        trainer = self.trainer
        if trainer is None:
            return 0
        done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        return done if done < self.steps_per_epoch() else 0

    def _loader(self, split: str, train: bool) -> DataLoader:
        self.setup()
        batch_size = self.batch_size if train else self.eval_batch_size
        sampler = None
        if self.group_by_length:
            trainer = self.trainer
            sampler = LengthGroupedSampler(
                self.lengths(split),
                batch_size,
                shuffle=train,
                seed=self.seed,
                skip_batches=self._batches_done_this_epoch if train else None,
                num_replicas=trainer.world_size if trainer is not None else 1,
                rank=trainer.global_rank if trainer is not None else 0,
            )
        loader_class = ResumableDataLoader if sampler is not None and train else DataLoader
        return loader_class(
            self.tokenized[split],
            batch_size=batch_size,
            sampler=sampler,
            shuffle=train and sampler is None,
            collate_fn=DataCollatorWithPadding(self.tokenizer),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Training batches (length-grouped and shuffled, seeded per epoch)."""
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches (length-sorted)."""
        return self._loader("validation", train=False)

    def test_dataloader(self) -> DataLoader:
        """Test batches; requires ``test_split``."""
        if "test" not in self.raw:
            raise DataError(["test_split is not set: no test data to evaluate"])
        return self._loader("test", train=False)

    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch (``batch_size`` per process, all processes together, no accumulation)."""
        world = self.trainer.world_size if self.trainer is not None else 1
        return math.ceil((len(self.raw["train"]) + self.transfer_rows()) / (self.batch_size * world))

    def texts(self, split: str = "validation", limit: int | None = None) -> list[str | tuple[str, str]]:
        """Raw texts of a split (pairs as tuples), e.g. for tokenizer checks or pipelines."""
        ds = self.raw[split] if limit is None else self.raw[split].select(range(min(limit, len(self.raw[split]))))
        cols = [ds[f] for f in self.text_fields]
        return list(cols[0]) if len(cols) == 1 else list(zip(*cols, strict=True))
