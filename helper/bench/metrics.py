"""Quality metrics: the torchmetrics collections that the Lightning modules log (:func:`task_metrics`) and the numbers
a benchmark row reports from the logits of the throughput pass (:func:`quality_metrics`).

Single-label classification: accuracy, macro F1 and per-class F1 (binary: also precision, recall and ROC-AUC of class
1). Multi-label classification (one sigmoid per label): micro and macro F1 at a decision threshold (0.5 by default),
per-label F1, subset accuracy (every label of an example right), macro ROC-AUC and macro average precision. Regression:
Pearson and Spearman correlation and the mean squared error.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torchmetrics import MeanSquaredError, MetricCollection, PearsonCorrCoef, SpearmanCorrCoef
from torchmetrics.classification import (
    MultilabelAUROC,
    MultilabelAveragePrecision,
    MultilabelExactMatch,
    MultilabelF1Score,
)
from torchmetrics.wrappers import ClasswiseWrapper

from data.labels import MULTI_LABEL, REGRESSION, SINGLE_LABEL
from helper.training import classification_metrics

__all__ = ["metric_inputs", "quality_metrics", "task_metrics", "tune_threshold"]


def _classwise_names(label_names: Sequence[str]) -> list[str]:
    return [str(n).replace(" ", "_") for n in label_names]


def task_metrics(
    problem_type: str, label_names: Sequence[str], prefix: str, threshold: float = 0.5
) -> MetricCollection:
    """The validation/test metrics of a task, logged as ``{prefix}<name>``.

    * single-label: ``acc``, ``f1`` (macro), ``f1_<class>`` (:func:`helper.training.classification_metrics`);
    * multi-label: ``acc`` (subset accuracy: all labels of an example right), ``f1`` (macro F1), ``f1_micro``,
      ``f1_<label>``, ``auroc`` (macro ROC-AUC) and ``ap`` (macro average precision), F1 and accuracy at
      ``threshold`` on the sigmoid scores;
    * regression: ``pearson``, ``spearman`` and ``mse``.

    The collection takes what :func:`metric_inputs` makes of logits and labels.

    Args:
        problem_type: One of ``data.labels.PROBLEM_TYPES``.
        label_names: The class names (one name for regression).
        prefix: Prefix of every metric name (``val_``, ``test_``, ...).
        threshold: Multi-label decision threshold on the sigmoid scores.
    """
    if problem_type == SINGLE_LABEL:
        return classification_metrics(label_names, prefix=prefix)
    if problem_type == REGRESSION:
        with warnings.catch_warnings():  # rank correlation needs every value: kept by design (one value per example)
            warnings.filterwarnings("ignore", "Metric `SpearmanCorrcoef` will save all targets", UserWarning)
            spearman = SpearmanCorrCoef()
        return MetricCollection(
            {"pearson": PearsonCorrCoef(), "spearman": spearman, "mse": MeanSquaredError()}, prefix=prefix
        )
    n = len(label_names)
    return MetricCollection(
        {
            "acc": MultilabelExactMatch(num_labels=n, threshold=threshold),
            "f1": MultilabelF1Score(num_labels=n, threshold=threshold, average="macro"),
            "f1_micro": MultilabelF1Score(num_labels=n, threshold=threshold, average="micro"),
            "auroc": MultilabelAUROC(num_labels=n, average="macro"),
            "ap": MultilabelAveragePrecision(num_labels=n, average="macro"),
            "f1_class": ClasswiseWrapper(
                MultilabelF1Score(num_labels=n, threshold=threshold, average=None),
                labels=_classwise_names(label_names),
                prefix="f1_",
            ),
        },
        prefix=prefix,
        compute_groups=False,  # the F1 variants would share state and warn on every compute
    )


def metric_inputs(logits: torch.Tensor, labels: torch.Tensor, problem_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """What :func:`task_metrics` takes: class logits and ids (single-label), sigmoid scores and 0/1 targets
    (multi-label; torchmetrics would apply the sigmoid itself only when some score falls outside [0, 1]), or the one
    output and the targets (regression)."""
    if problem_type == MULTI_LABEL:
        return torch.sigmoid(logits.float()), labels.long()
    if problem_type == REGRESSION:
        return logits.float().reshape(-1), labels.float().reshape(-1)
    return logits, labels


def _column_label(name: str) -> str:
    return str(name).strip().replace(" ", "_").replace("|", "_")


def tune_threshold(logits: torch.Tensor, labels: torch.Tensor, grid: Sequence[float] | None = None) -> float:
    """The multi-label decision threshold (one for every label) with the best macro F1 on these examples.

    Args:
        logits: ``(N, C)`` multi-label logits (of the validation split: never tune on the test split).
        labels: ``(N, C)`` 0/1 targets.
        grid: Thresholds tried (default 0.05, 0.10, ..., 0.95); ties go to the one nearest 0.5.
    """
    grid = [round(0.05 * i, 2) for i in range(1, 20)] if grid is None else list(grid)
    scores, target = torch.sigmoid(logits.float()), labels.long()
    n = labels.shape[-1]
    best = max(
        grid,
        key=lambda t: (
            MultilabelF1Score(num_labels=n, threshold=t, average="macro")(scores, target).item(),
            -abs(t - 0.5),
        ),
    )
    return float(best)


def quality_metrics(
    logits: torch.Tensor,
    labels: torch.Tensor,
    label_names: Sequence[str],
    problem_type: str = SINGLE_LABEL,
    threshold: float = 0.5,
) -> dict[str, float | None]:
    """The quality numbers of a benchmark row, from the collection the modules log (:func:`task_metrics`), so a
    benchmark row and a validation log line of the same model on the same split agree.

    * single-label: ``accuracy``, ``f1_macro``; binary: ``precision``, ``recall`` and ``roc_auc`` of class 1;
      multi-class: ``f1_<class>``;
    * multi-label: ``accuracy`` (subset accuracy: every label of an example right), ``f1_macro``, ``f1_micro``,
      ``auroc_macro``, ``ap_macro`` and ``f1_<label>`` at ``threshold`` (and ``threshold`` itself);
    * regression: ``pearson``, ``spearman``, ``mse``.

    Args:
        logits: ``(N, C)`` scores.
        labels: ``(N,)`` class indices, ``(N, C)`` 0/1 targets (multi-label) or ``(N,)`` numbers (regression).
        label_names: The ``C`` class names (used for the per-class column names ``f1_<name>``).
        problem_type: One of ``data.labels.PROBLEM_TYPES``.
        threshold: Multi-label decision threshold on the sigmoid scores.

    Returns:
        Metric name to value; ``roc_auc`` is None when the labels hold a single class.
    """
    logits = logits.float().cpu()
    if problem_type != SINGLE_LABEL:
        metrics = task_metrics(problem_type, label_names, prefix="", threshold=threshold)
        metrics.update(*metric_inputs(logits, labels.cpu(), problem_type))
        if problem_type == REGRESSION:
            return {k: v.item() for k, v in metrics.compute().items()}
        names = {"acc": "accuracy", "f1": "f1_macro", "f1_micro": "f1_micro", "auroc": "auroc_macro"}
        names["ap"] = "ap_macro"
        out: dict[str, float | None] = {"threshold": float(threshold)}
        out.update({new: metrics[old].compute().item() for old, new in names.items()})
        per_label = metrics["f1_class"].metric.compute().tolist()
        out.update({f"f1_{_column_label(n)}": v for n, v in zip(label_names, per_label, strict=True)})
        return out
    from torchmetrics.classification import BinaryAUROC, BinaryPrecision, BinaryRecall

    labels = labels.long().cpu()
    preds = logits.argmax(dim=-1)
    logged = classification_metrics(label_names, prefix="")
    logged.update(preds, labels)
    out = {
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
