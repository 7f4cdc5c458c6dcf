"""Logit adaptors: losses between the teacher's and the student's classifier logits ``(B, C)``.

What the logits mean depends on the task (``ModelDims.problem_type``), and so does the adaptor that fits:

* single-label classification (one softmax over the classes): :class:`LogitKD`, :class:`LogitCE`, :class:`LogitMSE`;
* multi-label classification (one sigmoid per label, each an independent Bernoulli): :class:`LogitBinaryKD`,
  :class:`LogitBCE`, :class:`LogitMSE`;
* regression (one number): :class:`LogitMSE` (squared error to the teacher's output).

An adaptor on a task it is not made for is an error naming the ones that fit.
"""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from adaptors.base import PROBLEM_TYPES, Adaptor, ModelDims, Taps, as_float32, check_bool, check_positive_float
from adaptors.registry import ADAPTORS, register

__all__ = ["LogitBCE", "LogitBinaryKD", "LogitCE", "LogitKD", "LogitMSE", "logit_adaptors_for"]

SINGLE, MULTI, REGRESSION = PROBLEM_TYPES


def logit_adaptors_for(problem_type: str) -> list[str]:
    """The registered logit adaptors made for a problem type (``ModelDims.problem_type``), by name."""
    return sorted(
        name
        for name, cls in ADAPTORS.items()
        if cls.kind == "logit" and problem_type in getattr(cls, "problem_types", PROBLEM_TYPES)
    )


class _LogitAdaptor(Adaptor):
    """Shared checks of logit adaptors: same number of labels and problem type, one this adaptor is made for,
    positive temperature."""

    needs = frozenset({"logits"})
    kind = "logit"
    default_layers = None
    #: The problem types (``ModelDims.problem_type``) whose logits this adaptor compares.
    problem_types: ClassVar[tuple[str, ...]] = (SINGLE,)

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
        if teacher.problem_type != student.problem_type:
            raise ValueError(
                f"{self.name}: teacher has problem_type={teacher.problem_type!r} but student has "
                f"problem_type={student.problem_type!r}; expected the same task (config.problem_type)"
            )
        if teacher.problem_type not in self.problem_types:
            raise ValueError(
                f"{self.name} compares {' or '.join(self.problem_types)} logits but the teacher's are "
                f"{teacher.problem_type!r}; expected one of the adaptors for {teacher.problem_type}: "
                f"{', '.join(logit_adaptors_for(teacher.problem_type))}"
            )
        self.temperature = check_positive_float("temperature", temperature, self.name)

    def _logits(self, teacher: Taps, student: Taps) -> tuple[Tensor, Tensor]:
        """Teacher (detached) and student logits, in float32 or better."""
        return as_float32(teacher.logits.detach()), as_float32(student.logits)


class _SoftTargetAdaptor(_LogitAdaptor):
    """A logit adaptor whose loss is a cross-entropy with the teacher's soft targets, optionally scaled by ``T^2``."""

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

    def _scaled(self, loss: Tensor) -> Tensor:
        t = self.temperature
        return loss * (t * t) if self.t2_scaling else loss


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
class LogitCE(_SoftTargetAdaptor):
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

    def compute_loss(self, teacher: Taps, student: Taps) -> Tensor:
        z_t, z_s = self._logits(teacher, student)
        t = self.temperature
        p_t = F.softmax(z_t / t, dim=-1)
        log_p_s = F.log_softmax(z_s / t, dim=-1)
        return self._scaled(-(p_t * log_p_s).sum(dim=-1).mean())


@register
class LogitMSE(_LogitAdaptor):
    r"""Mean squared error between raw logits (Tang et al., 2019, "Distilling Task-Specific Knowledge from BERT into
    Simple Neural Networks", arXiv:1903.12136), for every task: single-label and multi-label logits, and the output of
    a regression teacher (then it is the squared error to the teacher's prediction).

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
        after_softmax: Compare ``softmax(z / T)`` probability vectors instead of raw logits (single-label only).
    """

    problem_types = PROBLEM_TYPES

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
        if after_softmax and teacher.problem_type != SINGLE:
            raise ValueError(
                f"{self.name}: after_softmax=True compares softmax distributions, but the logits are "
                f"{teacher.problem_type!r}; expected after_softmax=False (raw logits)"
            )

    def compute_loss(self, teacher: Taps, student: Taps) -> Tensor:
        z_t, z_s = self._logits(teacher, student)
        if self.after_softmax:
            z_t = F.softmax(z_t / self.temperature, dim=-1)
            z_s = F.softmax(z_s / self.temperature, dim=-1)
        return F.mse_loss(z_s, z_t, reduction="mean")


@register
class LogitBinaryKD(_LogitAdaptor):
    r"""Knowledge distillation for multi-label classifiers: Hinton et al.'s soft targets (Hinton, Vinyals & Dean,
    2015, "Distilling the Knowledge in a Neural Network", arXiv:1503.02531) with one Bernoulli distribution per label,
    as a multi-label head models each label by its own sigmoid.

    .. math::
        L = T^2 \cdot \frac{1}{B C} \sum_b \sum_c \mathrm{KL}\big(\mathrm{Bern}(\sigma(z^t_{b,c} / T)) \,\|\,
        \mathrm{Bern}(\sigma(z^s_{b,c} / T))\big),\qquad
        \mathrm{KL}(p \,\|\, q) = p \log\frac{p}{q} + (1 - p) \log\frac{1 - p}{1 - q}

    i.e. the binary KL averaged over labels and examples, computed from ``logsigmoid`` for stability. With
    :math:`T^2`, as in :class:`LogitKD`, the gradient magnitude stays roughly independent of the temperature. It is
    0 when the student's logits equal the teacher's.

    Args:
        teacher: Teacher dimensions (``problem_type`` multi-label).
        student: Student dimensions (same ``num_labels`` and ``problem_type``).
        weight: Loss weight (>= 0), applied by the distiller.
        layers: Must be None (no encoder layers are used).
        temperature: Sigmoid temperature ``T > 0``.
    """

    problem_types = (MULTI,)

    def compute_loss(self, teacher: Taps, student: Taps) -> Tensor:
        z_t, z_s = self._logits(teacher, student)
        t = self.temperature
        a, b = z_t / t, z_s / t
        log_p, log_not_p = F.logsigmoid(a), F.logsigmoid(-a)
        log_q, log_not_q = F.logsigmoid(b), F.logsigmoid(-b)
        kl = log_p.exp() * (log_p - log_q) + log_not_p.exp() * (log_not_p - log_not_q)
        return kl.mean() * (t * t)


@register
class LogitBCE(_SoftTargetAdaptor):
    r"""Soft binary cross-entropy for multi-label classifiers: the student's sigmoid per label learns the teacher's
    probability as a soft target (the Bernoulli counterpart of :class:`LogitCE`; soft targets after Hinton et al.,
    2015, arXiv:1503.02531).

    .. math::
        L = -\frac{1}{B C} \sum_b \sum_c \big[p_{b,c} \log \sigma(z^s_{b,c} / T) + (1 - p_{b,c})
        \log(1 - \sigma(z^s_{b,c} / T))\big], \qquad p_{b,c} = \sigma(z^t_{b,c} / T)

    It equals :class:`LogitBinaryKD` divided by :math:`T^2` plus the teacher's mean binary entropy (a constant for the
    student): its minimum is that entropy, not 0. ``t2_scaling=True`` multiplies it by :math:`T^2`.

    Args:
        teacher: Teacher dimensions (``problem_type`` multi-label).
        student: Student dimensions (same ``num_labels`` and ``problem_type``).
        weight: Loss weight (>= 0), applied by the distiller.
        layers: Must be None (no encoder layers are used).
        temperature: Sigmoid temperature ``T > 0``.
        t2_scaling: Multiply the loss by :math:`T^2`.
    """

    problem_types = (MULTI,)

    def compute_loss(self, teacher: Taps, student: Taps) -> Tensor:
        z_t, z_s = self._logits(teacher, student)
        t = self.temperature
        return self._scaled(F.binary_cross_entropy_with_logits(z_s / t, (z_t / t).sigmoid(), reduction="mean"))
