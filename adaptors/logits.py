"""Logit adaptors: losses between the teacher's and the student's classifier logits ``(B, C)``."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from adaptors.base import Adaptor, ModelDims, Taps, as_float32, check_bool, check_positive_float
from adaptors.registry import register

__all__ = ["LogitCE", "LogitKD", "LogitMSE"]


class _LogitAdaptor(Adaptor):
    """Shared checks of logit adaptors: same number of labels, positive temperature."""

    needs = frozenset({"logits"})
    kind = "logit"
    default_layers = None

    def __init__(
        self,
        teacher: ModelDims,
        student: ModelDims,
        *,
        weight: float = 1.0,
        layers: str | list | None = None,
        temperature: float = 1.0,
    ) -> None:
        super().__init__(teacher, student, weight=weight, layers=layers)
        if teacher.num_labels != student.num_labels:
            raise ValueError(
                f"{self.name}: teacher has num_labels={teacher.num_labels} but student has "
                f"num_labels={student.num_labels}; logit adaptors need the same label set"
            )
        self.temperature = check_positive_float("temperature", temperature, self.name)

    def _logits(self, teacher: Taps, student: Taps) -> tuple[Tensor, Tensor]:
        """Teacher (detached) and student logits, in float32 or better."""
        return as_float32(teacher.logits.detach()), as_float32(student.logits)


@register
class LogitKD(_LogitAdaptor):
    r"""Soft-target knowledge distillation (Hinton, Vinyals & Dean, 2015, "Distilling the Knowledge in a Neural
    Network", arXiv:1503.02531).

    .. math::
        L = T^2 \cdot \frac{1}{B} \sum_b \mathrm{KL}\big(\mathrm{softmax}(z^t_b / T) \,\|\,
        \mathrm{softmax}(z^s_b / T)\big)

    i.e. KL summed over classes and averaged over the batch ("batchmean"). The :math:`T^2` factor keeps the gradient
    magnitude roughly independent of the temperature, as recommended by Hinton et al.

    Args:
        teacher: Teacher dimensions.
        student: Student dimensions (same ``num_labels`` as the teacher).
        weight: Loss weight (>= 0), applied by the distiller.
        layers: Must be None (no encoder layers are used).
        temperature: Softmax temperature ``T > 0``.
    """

    def compute_loss(self, teacher: Taps, student: Taps) -> Tensor:
        z_t, z_s = self._logits(teacher, student)
        t = self.temperature
        log_p_t = F.log_softmax(z_t / t, dim=-1)
        log_p_s = F.log_softmax(z_s / t, dim=-1)
        return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * (t * t)


@register
class LogitCE(_LogitAdaptor):
    r"""Soft cross-entropy between teacher and student class distributions, as used by DistilBERT-style task
    distillation and TinyBERT's prediction-layer loss (Jiao et al., 2020, "TinyBERT: Distilling BERT for Natural
    Language Understanding", arXiv:1909.10351).

    .. math::
        L = -\frac{1}{B} \sum_b \sum_c \mathrm{softmax}(z^t_b / T)_c \, \log \mathrm{softmax}(z^s_b / T)_c

    **Scaling:** by default the loss is *not* multiplied by :math:`T^2` (plain soft cross-entropy, as in TinyBERT).
    It equals :class:`LogitKD` divided by :math:`T^2` plus the teacher's entropy, a constant for the student, so its
    gradients are :math:`1/T^2` of LogitKD's. Set ``t2_scaling=True`` to multiply by :math:`T^2` (Hinton's
    convention). Unlike LogitKD the loss is not 0 when the student matches the teacher: its minimum is the teacher's
    entropy.

    Args:
        teacher: Teacher dimensions.
        student: Student dimensions (same ``num_labels`` as the teacher).
        weight: Loss weight (>= 0), applied by the distiller.
        layers: Must be None (no encoder layers are used).
        temperature: Softmax temperature ``T > 0``.
        t2_scaling: Multiply the loss by :math:`T^2`.
    """

    def __init__(
        self,
        teacher: ModelDims,
        student: ModelDims,
        *,
        weight: float = 1.0,
        layers: str | list | None = None,
        temperature: float = 1.0,
        t2_scaling: bool = False,
    ) -> None:
        super().__init__(teacher, student, weight=weight, layers=layers, temperature=temperature)
        self.t2_scaling = check_bool("t2_scaling", t2_scaling, self.name)

    def compute_loss(self, teacher: Taps, student: Taps) -> Tensor:
        z_t, z_s = self._logits(teacher, student)
        t = self.temperature
        p_t = F.softmax(z_t / t, dim=-1)
        log_p_s = F.log_softmax(z_s / t, dim=-1)
        loss = -(p_t * log_p_s).sum(dim=-1).mean()
        return loss * (t * t) if self.t2_scaling else loss


@register
class LogitMSE(_LogitAdaptor):
    r"""Mean squared error between raw logits (Tang et al., 2019, "Distilling Task-Specific Knowledge from BERT into
    Simple Neural Networks", arXiv:1903.12136).

    .. math::
        L = \frac{1}{B C} \sum_b \sum_c (z^s_{b,c} - z^t_{b,c})^2

    Tang et al. regress the student's logits onto the teacher's raw logits. Some recipes say "MSE after softmax",
    which would instead mean MSE between probability vectors,
    :math:`\frac{1}{BC}\sum (\mathrm{softmax}(z^s/T) - \mathrm{softmax}(z^t/T))^2`. That variant is offered with
    ``after_softmax=True`` but is usually a worse choice: the softmax Jacobian
    :math:`\partial p_i / \partial z_j = p_i(\delta_{ij} - p_j)/T` vanishes when the distributions are confident
    (near one-hot), so a confident teacher gives the student almost no gradient, and the per-example error is bounded
    by 2 regardless of how wrong the logits are.

    Args:
        teacher: Teacher dimensions.
        student: Student dimensions (same ``num_labels`` as the teacher).
        weight: Loss weight (>= 0), applied by the distiller.
        layers: Must be None (no encoder layers are used).
        temperature: Softmax temperature ``T > 0``, used only with ``after_softmax=True`` (accepted and ignored
            otherwise, so a distiller-wide default temperature does not break raw-logit MSE).
        after_softmax: Compare ``softmax(z / T)`` probability vectors instead of raw logits.
    """

    def __init__(
        self,
        teacher: ModelDims,
        student: ModelDims,
        *,
        weight: float = 1.0,
        layers: str | list | None = None,
        temperature: float = 1.0,
        after_softmax: bool = False,
    ) -> None:
        super().__init__(teacher, student, weight=weight, layers=layers, temperature=temperature)
        self.after_softmax = check_bool("after_softmax", after_softmax, self.name)

    def compute_loss(self, teacher: Taps, student: Taps) -> Tensor:
        z_t, z_s = self._logits(teacher, student)
        if self.after_softmax:
            z_t = F.softmax(z_t / self.temperature, dim=-1)
            z_s = F.softmax(z_s / self.temperature, dim=-1)
        return F.mse_loss(z_s, z_t, reduction="mean")
