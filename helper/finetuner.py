"""``ClfFinetune``: fine-tune a Hugging Face sequence classifier (the teacher) with Lightning."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from transformers import PreTrainedModel

from data.data_module import ClfDataModule, model_inputs
from helper.checkpoint import HgCkptIO, HgExport, hf_export_entry, tokenizer_files
from helper.models import load_classifier
from helper.training import (
    ResumableRandomState,
    adamw_with_warmup,
    check_hparams,
    classification_metrics,
    flatten_metrics,
    rng_states,
)

__all__ = ["ClfFinetune", "HgCkptIO", "HgExport"]


class ClfFinetune(ResumableRandomState, pl.LightningModule):
    """Fine-tunes a sequence classifier with cross-entropy.

    Args:
        model: A ``PreTrainedModel`` classifier, or a Hub name / local folder / alias (``"minilm"``) to load; a base
            encoder gets a new head sized from the data.
        dm: The data module; gives the label count and names, and the tokenizer saved with each checkpoint.
        lr: Peak learning rate of AdamW.
        weight_decay: Weight decay (not applied to biases and LayerNorm weights).
        warmup_ratio: Fraction of all optimizer steps used for linear warm-up; then linear decay to zero.
    """

    def __init__(
        self,
        model: PreTrainedModel | str = "minilm",
        dm: ClfDataModule | None = None,
        lr: float = 5e-5,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
    ) -> None:
        super().__init__()
        check_hparams(lr, weight_decay, warmup_ratio)
        if isinstance(model, str):
            if dm is None:
                raise ValueError(f"model={model!r} is a name, so dm is needed to size the classifier head; got dm=None")
            model = load_classifier(model, num_labels=dm.num_labels, id2label=dm.id2label)
        elif dm is not None:
            if model.config.num_labels != dm.num_labels:
                raise ValueError(
                    f"model has num_labels={model.config.num_labels} but the data has {dm.num_labels} classes "
                    f"{dm.label_names}; expected the same label count"
                )
            model.config.id2label, model.config.label2id = dm.id2label, dm.label2id
        self.save_hyperparameters(ignore=["model", "dm"])
        self.model = model.train()  # transformers v5 loads models in eval mode; Lightning keeps a module's mode
        self.dm = dm
        names = dm.label_names if dm is not None else [str(model.config.id2label[i]) for i in range(model.num_labels)]
        self.val_metrics = classification_metrics(names, prefix="val_")
        self.test_metrics = classification_metrics(names, prefix="test_")
        self._tok_files: dict[str, bytes] | None = None

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits for a tokenized batch."""
        return self.model(**model_inputs(batch)).logits

    def _step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(batch)
        return torch.nn.functional.cross_entropy(logits, batch["labels"]), logits

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Cross-entropy on the hard labels."""
        loss, _ = self._step(batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch["labels"]))
        self.log("lr", self.lr_schedulers().get_last_lr()[0], batch_size=len(batch["labels"]))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Validation loss and metrics (accuracy, macro and per-class F1)."""
        loss, logits = self._step(batch)
        self.val_metrics.update(logits, batch["labels"])
        self.log("val_loss", loss, prog_bar=True, sync_dist=True, batch_size=len(batch["labels"]))

    def on_validation_epoch_end(self) -> None:
        """Log and reset the metrics."""
        self.log_dict(flatten_metrics(self.val_metrics.compute()), prog_bar=False, sync_dist=True)
        self.val_metrics.reset()

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Test loss and metrics (``test_acc``, ``test_f1``, per-class F1), from the same step as validation."""
        loss, logits = self._step(batch)
        self.test_metrics.update(logits, batch["labels"])
        self.log("test_loss", loss, sync_dist=True, batch_size=len(batch["labels"]))

    def on_test_epoch_end(self) -> None:
        """Log and reset the test metrics."""
        self.log_dict(flatten_metrics(self.test_metrics.compute()), sync_dist=True)
        self.test_metrics.reset()

    def configure_optimizers(self) -> dict:
        """AdamW with linear warm-up and decay over the real number of steps."""
        hp = self.hparams
        return adamw_with_warmup(
            self.model.named_parameters(),
            hp.lr,
            hp.weight_decay,
            hp.warmup_ratio,
            self.trainer.estimated_stepping_batches,
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Describe the Hugging Face model inside the checkpoint (used by ``HgCkptIO`` and ``HgExport``)."""
        if self._tok_files is None and self.dm is not None:
            self._tok_files = tokenizer_files(self.dm.tokenizer)
        checkpoint["hf_export"] = hf_export_entry(self.model, "model.", self._tok_files)
        checkpoint["rng_states"] = rng_states()
