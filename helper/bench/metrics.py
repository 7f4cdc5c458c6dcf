"""Quality metrics from the logits of the throughput pass, computed with the torchmetrics collection that the
Lightning modules log (:func:`helper.training.classification_metrics`), plus binary precision, recall and ROC-AUC."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from helper.training import classification_metrics


def _column_label(name: str) -> str:
    return str(name).strip().replace(" ", "_").replace("|", "_")


def quality_metrics(logits: torch.Tensor, labels: torch.Tensor, label_names: Sequence[str]) -> dict[str, float | None]:
    """Accuracy and macro F1; binary: precision, recall and ROC-AUC of class 1; multi-class: F1 of every class.

    Accuracy, macro F1 and the per-class F1 come from :func:`helper.training.classification_metrics`, the collection
    the training and distillation modules log (``val_acc``, ``val_f1``, ``val_f1_<name>``), so a benchmark row and a
    validation log line of the same model on the same split agree.

    Args:
        logits: ``(N, C)`` scores.
        labels: ``(N,)`` class indices.
        label_names: The ``C`` class names (used for the per-class column names ``f1_<name>``).

    Returns:
        Metric name to value in [0, 1]; ``roc_auc`` is None when the labels hold a single class.
    """
    from torchmetrics.classification import BinaryAUROC, BinaryPrecision, BinaryRecall

    logits, labels = logits.float().cpu(), labels.long().cpu()
    preds = logits.argmax(dim=-1)
    logged = classification_metrics(label_names, prefix="")
    logged.update(preds, labels)
    out: dict[str, float | None] = {
        "accuracy": logged["acc"].compute().item(),
        "f1_macro": logged["f1"].compute().item(),
    }
    if len(label_names) == 2:
        out["precision"] = BinaryPrecision()(preds, labels).item()
        out["recall"] = BinaryRecall()(preds, labels).item()
        scores = logits.softmax(dim=-1)[:, 1]
        out["roc_auc"] = BinaryAUROC()(scores, labels).item() if labels.unique().numel() == 2 else None
    else:  # by class index: the wrapper's own names (spaces replaced) could collide where the column names do not
        per_class = logged["f1_class"].metric.compute().tolist()
        for name, value in zip(label_names, per_class, strict=True):
            out[f"f1_{_column_label(name)}"] = value
    return out
