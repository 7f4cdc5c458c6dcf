"""``ClfFinetune``: fine-tune a Hugging Face sequence classifier (the teacher) with Lightning."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from data.data_module import ClfDataModule, model_inputs
from data.labels import MULTI_LABEL
from helper.checkpoint import HgCkptIO, HgExport
from helper.models import load_classifier
from helper.module import ClfModule
from helper.training import check_hparams

__all__ = ["ClfFinetune", "HgCkptIO", "HgExport", "is_classifier_folder", "set_prior_bias"]


def is_classifier_folder(name_or_path: str) -> bool:
    """Whether a model name / folder / alias holds a fine-tuned ``*ForSequenceClassification`` (its head trained)."""
    from transformers import AutoConfig

    from common.resolve import resolve_model_path

    config = AutoConfig.from_pretrained(resolve_model_path(name_or_path))
    return any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))


def set_prior_bias(model: PreTrainedModel, dm: ClfDataModule) -> None:
    """Set the bias of a multi-label head's output layer to the training labels' prior log-odds (clipped to
    frequencies in [1e-4, 1 - 1e-4]; see ``ClfFinetune(prior_bias=...)``)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    layer = getattr(model, "classifier", None) if head is None else head
    layer = getattr(layer, "out_proj", layer)  # RoBERTa-style heads end in out_proj
    bias = getattr(layer, "bias", None)
    if bias is None or bias.shape != (dm.num_labels,):
        return
    counts = torch.zeros(dm.num_labels)
    rows = dm.raw["train"][dm.label_field]
    for ids in rows:
        counts[list(ids)] += 1
    prior = (counts / max(len(rows), 1)).clamp(1e-4, 1 - 1e-4)
    with torch.no_grad():
        bias.copy_(torch.log(prior / (1 - prior)).to(bias.dtype))


class ClfFinetune(ClfModule):
    r"""Fine-tunes a sequence classifier on the hard labels: cross-entropy (single-label), binary cross-entropy with
    logits (multi-label) or squared error (regression), as the data's ``problem_type`` says; the exported model's
    config carries that ``problem_type``.

    Args:
        model: A ``PreTrainedModel`` classifier, or a Hub name / local folder / alias (``"minilm"``) to load; a base
            encoder gets a new head sized from the data.
        dm: The data module; gives the label count and names, and the tokenizer saved with each checkpoint.
        lr: Peak learning rate of AdamW.
        weight_decay: Weight decay (not applied to biases and LayerNorm weights).
        warmup_ratio: Fraction of all optimizer steps used for linear warm-up; then linear decay to zero.
        prior_bias: Multi-label data and a head created here (``model`` a base encoder given by name): start the
            head's bias at each label's prior log-odds in the training split, :math:`b_c = \log(p_c / (1 - p_c))`,
            the "prior" initialisation of Lin et al. (2017, "Focal Loss for Dense Object Detection",
            arXiv:1708.02002). Without it the first steps of binary cross-entropy learn the label frequencies by
            moving the encoder: all-MiniLM-L6-v2 on GoEmotions collapsed to one output for every comment within 50
            steps (learning rates 3e-5 to 2e-4) and did not recover. A fine-tuned head is never changed.
    """

    def __init__(
        self,
        model: PreTrainedModel | str = "minilm",
        dm: ClfDataModule | None = None,
        lr: float = 5e-5,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        prior_bias: bool = True,
    ) -> None:
        super().__init__()
        check_hparams(lr, weight_decay, warmup_ratio)
        if not isinstance(prior_bias, bool):
            raise ValueError(f"prior_bias (--model.prior_bias)={prior_bias!r}: expected true or false")
        if dm is not None and dm.transfer_sources:  # rows without labels need a teacher to label them
            raise ValueError(
                f"the data has a transfer set ({', '.join(f'data.{s}' for s in dm.transfer_sources)}) but "
                "fine-tuning has no teacher to label its rows; expected --data.unlabeled null --data.augment null "
                "--data.rest_as_unlabeled false (to learn from unlabelled text, distil: distillation_ms.py)"
            )
        if isinstance(model, str):
            if dm is None:
                raise ValueError(f"model={model!r} is a name, so dm is needed to size the classifier head; got dm=None")
            new_head = not is_classifier_folder(model)
            model = load_classifier(model, num_labels=dm.num_labels, id2label=dm.id2label)
            self.check_label_count(model, "model", dm)
            if new_head and prior_bias and dm.problem_type == MULTI_LABEL:
                set_prior_bias(model, dm)
        elif dm is not None:
            self.check_label_count(model, "model", dm)
            model.config.id2label, model.config.label2id = dm.id2label, dm.label2id
        self.save_hyperparameters(ignore=["model", "dm"])
        self.model = model.train()  # transformers v5 loads models in eval mode; Lightning keeps a module's mode
        self.dm = dm
        self.init_metrics(self.label_names(model, dm))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits for a tokenized batch."""
        return self.model(**model_inputs(batch)).logits

    def _step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(batch)
        return self.hard_label_loss(logits, batch["labels"]), logits

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """The hard-label loss (:meth:`ClfModule.hard_label_loss`: CE, BCE-with-logits or MSE)."""
        loss, _ = self._step(batch)
        self.log_train_loss(loss, len(batch["labels"]))
        return loss

    def _evaluate(self, batch: dict[str, torch.Tensor], split: str) -> tuple[torch.Tensor, None]:
        """``<split>_loss`` (the hard-label loss); the logits go to the metrics (:meth:`ClfModule.validation_step`)."""
        loss, logits = self._step(batch)
        self.log(f"{split}_loss", loss, prog_bar=split == "val", sync_dist=True, batch_size=len(batch["labels"]))
        return logits, None
