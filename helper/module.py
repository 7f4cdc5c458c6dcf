"""``ClfModule``: the Lightning base shared by fine-tuning (:class:`~helper.finetuner.ClfFinetune`) and distillation
(:class:`~helper.distiller.BaseDistiller`).

Both train one Hugging Face sequence classifier on a :class:`~data.data_module.ClfDataModule` and export it. What they
share lives here, once: the label-count check, the validation/test metrics, the evaluation steps and their epoch-end
logging, AdamW with warm-up, and the checkpoint entries (``hf_export`` for :class:`~helper.checkpoint.HgCkptIO` /
:class:`~helper.checkpoint.HgExport`, and the random states). A subclass says which model it exports
(:attr:`ClfModule.export_attr`), which parameters train (:meth:`ClfModule.trainable_parameters`), and how one batch is
evaluated (:meth:`ClfModule._evaluate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from transformers import PreTrainedModel

from data.data_module import ClfDataModule
from data.labels import IGNORE_INDEX, MULTI_LABEL, REGRESSION, SINGLE_LABEL
from helper.bench.metrics import metric_inputs, task_metrics
from helper.checkpoint import hf_export_entry, tokenizer_files
from helper.training import ResumableRandomState, adamw_with_warmup, flatten_metrics, rng_states

__all__ = ["ClfModule", "effective_problem_type", "hard_label_loss", "labelled_rows"]


def effective_problem_type(config: object) -> str:
    """A model config's ``problem_type``, or what Hugging Face infers when it is unset: regression for one output,
    single-label classification otherwise (``*ForSequenceClassification.forward`` decides so at its first loss)."""
    given = getattr(config, "problem_type", None)
    if given:
        return given
    return REGRESSION if getattr(config, "num_labels", 2) == 1 else SINGLE_LABEL


def labelled_rows(labels: torch.Tensor) -> torch.Tensor:
    """``(B,)`` bool: the rows of a batch that have a label. Transfer rows have none: ``-100`` class ids
    (single-label), NaN targets (multi-label: every entry; regression)."""
    if labels.is_floating_point():
        missing = labels.isnan()
        return ~(missing.reshape(len(labels), -1).any(dim=-1))
    return labels != IGNORE_INDEX


def hard_label_loss(logits: torch.Tensor, labels: torch.Tensor, problem_type: str) -> torch.Tensor:
    r"""The loss on the hard labels, averaged over the labelled rows (transfer rows left out; 0 when none is labelled).

    * single-label: cross-entropy :math:`-\log \mathrm{softmax}(z)_y`;
    * multi-label: binary cross-entropy with logits, :math:`-\frac{1}{C}\sum_c [y_c \log \sigma(z_c) +
      (1 - y_c) \log(1 - \sigma(z_c))]`, each label an independent Bernoulli;
    * regression: squared error :math:`(z - y)^2` of the one output.

    These are the losses Hugging Face's ``*ForSequenceClassification`` computes for its ``problem_type``.

    Args:
        logits: ``(B, C)`` outputs (``C`` = 1 for regression).
        labels: ``(B,)`` class ids, ``(B, C)`` multi-hot targets, or ``(B,)`` numbers.
        problem_type: One of ``data.labels.PROBLEM_TYPES``.
    """
    mask = labelled_rows(labels)
    count = mask.sum().clamp(min=1)
    if problem_type == SINGLE_LABEL:
        return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum") / count
    z, y = logits.float()[mask], labels.float()[mask]
    if problem_type == MULTI_LABEL:
        per_row = F.binary_cross_entropy_with_logits(z, y, reduction="none").mean(dim=-1)
    else:
        per_row = (z.reshape(-1) - y.reshape(-1)) ** 2
    return per_row.sum() / count


class ClfModule(ResumableRandomState, pl.LightningModule):
    """A classifier trained on a ``ClfDataModule``; the base of ``ClfFinetune`` and ``BaseDistiller``.

    A subclass sets ``self.dm`` and ``self.<export_attr>``, calls :meth:`init_metrics`, keeps ``lr``,
    ``weight_decay`` and ``warmup_ratio`` in its hyperparameters, and implements :meth:`_evaluate` and
    :meth:`trainable_parameters`.
    """

    #: Attribute holding the trained Hugging Face model; its weights sit under ``"<export_attr>."`` in the state dict.
    export_attr: ClassVar[str] = "model"

    def __init__(self) -> None:
        super().__init__()
        self.dm: ClfDataModule | None = None
        self._tok_files: dict[str, bytes] | None = None
        self._teacher_logged = False

    # ------------------------------------------------------------------ construction
    @staticmethod
    def check_label_count(model: PreTrainedModel, role: str, dm: ClfDataModule | None) -> None:
        """Raise ``ValueError`` when ``model`` (called ``role`` in the message) has another label count or another
        ``problem_type`` than ``dm`` (every problem at once). A model whose ``config.problem_type`` is unset takes
        the data's (Hugging Face infers it only at the first loss), except a ``"teacher"``: its trained head is read
        as Hugging Face reads it (single-label for two or more outputs, regression for one).
        """
        if dm is None:
            return
        problems = []
        if model.config.num_labels != dm.num_labels:
            problems.append(
                f"{role} has num_labels={model.config.num_labels} but the data has {dm.num_labels} classes "
                f"{dm.label_names}; expected the same label count"
            )
        given = getattr(model.config, "problem_type", None)
        if given is None and role == "teacher":  # a trained head: unset means what Hugging Face reads it as
            given = effective_problem_type(model.config)
            unset = " (config.problem_type unset: Hugging Face reads it so; set it if the model is another kind)"
        else:
            unset = " (config.problem_type)"
        if given and given != dm.problem_type:
            problems.append(
                f"{role} has problem_type={given!r}{unset} but the data is {dm.problem_type!r} "
                f"(label field {dm.label_field!r}); expected the same problem type (a {given} model needs "
                f"{given} data: --data.problem_type, --data.label_field)"
            )
        if problems:
            raise ValueError(problems[0] if len(problems) == 1 else "\n".join(f"- {p}" for p in problems))
        model.config.problem_type = dm.problem_type

    @staticmethod
    def label_names(model: PreTrainedModel, dm: ClfDataModule | None) -> list[str]:
        """The data's class names, else the model's ``config.id2label`` in index order."""
        if dm is not None:
            return list(dm.label_names)
        return [str(model.config.id2label[i]) for i in range(model.config.num_labels)]

    @property
    def problem_type(self) -> str:
        """The task: the data's problem type, else the exported model's (``data.labels.PROBLEM_TYPES``)."""
        if self.dm is not None:
            return self.dm.problem_type
        return effective_problem_type(getattr(self, self.export_attr).config)

    def hard_label_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """:func:`hard_label_loss` for this module's task: CE, BCE-with-logits or MSE over the labelled rows."""
        return hard_label_loss(logits, labels, self.problem_type)

    def init_metrics(self, label_names: Sequence[str], teacher: bool = False) -> None:
        """Validation and test metrics (``val_*``, ``test_*``) of the task (:func:`helper.bench.metrics.task_metrics`);
        with ``teacher``, the teacher's too (``teacher_val_*`` once, on the first validation after the sanity check,
        and ``teacher_test_*``)."""
        kind = self.problem_type
        self.val_metrics = task_metrics(kind, label_names, prefix="val_")
        self.teacher_metrics = task_metrics(kind, label_names, prefix="teacher_val_") if teacher else None
        self.test_metrics = task_metrics(kind, label_names, prefix="test_")
        self.teacher_test_metrics = task_metrics(kind, label_names, prefix="teacher_test_") if teacher else None

    def _update(self, metrics: MetricCollection, logits: torch.Tensor, labels: torch.Tensor) -> None:
        metrics.update(*metric_inputs(logits, labels, self.problem_type))

    # ------------------------------------------------------------------ what a subclass provides
    def trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """Named parameters handed to AdamW (those with ``requires_grad`` train); default: the exported model's."""
        return list(getattr(self, self.export_attr).named_parameters())

    def _evaluate(self, batch: dict[str, torch.Tensor], split: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Log ``<split>_loss`` (and any other loss) for one batch; return the model's and the teacher's logits
        (None without a teacher), which the metrics take."""
        raise NotImplementedError

    # ------------------------------------------------------------------ training
    def log_train_loss(self, loss: torch.Tensor, batch_size: int) -> None:
        """Log ``train_loss`` (progress bar) and the learning rate of this step."""
        self.log("train_loss", loss, prog_bar=True, batch_size=batch_size)
        self.log("lr", self.lr_schedulers().get_last_lr()[0], batch_size=batch_size)

    # ------------------------------------------------------------------ evaluation
    def _teacher_val_pending(self) -> bool:
        return self.teacher_metrics is not None and not self._teacher_logged and not self.trainer.sanity_checking

    def _log_metrics(self, metrics: MetricCollection) -> None:
        self.log_dict(flatten_metrics(metrics.compute()), sync_dist=True)
        metrics.reset()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Validation loss and metrics (accuracy, macro and per-class F1); the teacher's metrics once."""
        logits, t_logits = self._evaluate(batch, "val")
        self._update(self.val_metrics, logits, batch["labels"])
        if self._teacher_val_pending():
            self._update(self.teacher_metrics, t_logits, batch["labels"])

    def on_validation_epoch_end(self) -> None:
        """Log and reset the validation metrics (the teacher's the first time)."""
        self._log_metrics(self.val_metrics)
        if self._teacher_val_pending():
            self._log_metrics(self.teacher_metrics)
            self._teacher_logged = True

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """The validation step on the test split: ``test_loss``, ``test_*`` (and the teacher's ``teacher_test_*``)."""
        logits, t_logits = self._evaluate(batch, "test")
        self._update(self.test_metrics, logits, batch["labels"])
        if self.teacher_test_metrics is not None:
            self._update(self.teacher_test_metrics, t_logits, batch["labels"])

    def on_test_epoch_end(self) -> None:
        """Log and reset the test metrics (and the teacher's)."""
        for metrics in (self.test_metrics, self.teacher_test_metrics):
            if metrics is not None:
                self._log_metrics(metrics)

    # ------------------------------------------------------------------ optimizer and checkpoints
    def configure_optimizers(self) -> dict:
        """AdamW over :meth:`trainable_parameters` with linear warm-up and decay over the real number of steps."""
        hp = self.hparams
        return adamw_with_warmup(
            self.trainable_parameters(),
            hp.lr,
            hp.weight_decay,
            hp.warmup_ratio,
            self.trainer.estimated_stepping_batches,
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Describe the exported Hugging Face model (``hf_export``: config, tokenizer files, weight prefix) and store
        the random states."""
        if self._tok_files is None and self.dm is not None:
            self._tok_files = tokenizer_files(self.dm.tokenizer)
        model = getattr(self, self.export_attr)
        checkpoint["hf_export"] = hf_export_entry(model, f"{self.export_attr}.", self._tok_files)
        checkpoint["rng_states"] = rng_states()
