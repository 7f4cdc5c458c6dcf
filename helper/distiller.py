"""Distillation LightningModules: mix-step (``BaseDistiller``) and two-step (``InterDistiller`` → ``PredDistiller``).

The teacher is frozen, in eval mode and run under ``no_grad``. What the adaptors need from inside the models
(queries, keys, values, layer outputs, embeddings) is captured with forward hooks (:mod:`helper.taps`), so both models
keep their fast attention. Learned projections live in the adaptors, never in the student, and the exported student
(through :class:`~helper.checkpoint.HgCkptIO` / :class:`~helper.checkpoint.HgExport`) is a plain Hugging Face model.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import nn
from transformers import PreTrainedModel

from adaptors import Adaptor, ModelDims, Taps, build_adaptors, resolve_layer_map
from data.data_module import TEACHER_LOGITS, ClfDataModule, model_inputs
from helper.attention_maps import AttentionMaps, capture_attention, log_image, render
from helper.checkpoint import HgCkptIO, HgExport
from helper.models import load_classifier, position_problem, student_from_config, student_from_layers
from helper.module import ClfModule, labelled_rows
from helper.taps import ModelTaps
from helper.teacher_source import (
    VOCAB_KEYS,
    check_model_labels,
    check_student_vocab,
    check_teacher_source,
    own_vocabulary,
    own_vocabulary_student,
)
from helper.training import check_hparams

__all__ = ["BaseDistiller", "InterDistiller", "PredDistiller", "HgCkptIO", "HgExport", "make_student"]

STUDENT_KEYS = {"from", "layers", "num_layers", "hidden_size", "num_heads", "intermediate_size", *VOCAB_KEYS}
AdaptorSpec = str | Sequence[Any] | dict[str, Any]


def make_student(
    spec: PreTrainedModel | str | dict[str, Any], teacher: PreTrainedModel | None, dm: ClfDataModule | None = None
) -> PreTrainedModel:
    """Build the student from a model, a name/path, or a recipe relative to the teacher.

    Args:
        spec: A ``PreTrainedModel``; a Hub name / folder / alias (a base encoder gets a new head sized like the
            teacher's); ``{"layers": [0, 5]}`` to keep those teacher layers (embeddings and head copied);
            ``{"from": "minilm", "layers": [0, 5]}`` to cut the layers from another model (e.g. the raw pretrained
            encoder); or ``{"num_layers": 2, "hidden_size": 192, "num_heads": 6}`` for a random smaller model
            with the teacher's vocabulary; add ``vocab_size: 8000, tokenizer: train`` for a random student with its
            own WordPiece vocabulary trained on the run's texts (:mod:`helper.teacher_source`).
        teacher: The teacher (None when the data carries precomputed teacher outputs).
        dm: Data module, for label names.

    Raises:
        ValueError: Unknown recipe keys or invalid values (each named).
    """
    if isinstance(spec, PreTrainedModel):
        return spec
    num_labels = teacher.config.num_labels if teacher is not None else dm.num_labels if dm is not None else None
    id2label = dm.id2label if dm is not None else dict(teacher.config.id2label) if teacher is not None else None
    if isinstance(spec, str):
        return load_classifier(spec, num_labels=num_labels, id2label=id2label)
    if not isinstance(spec, dict):
        raise ValueError(f"student={spec!r}: expected a model, a name/path, or a dict with keys {sorted(STUDENT_KEYS)}")
    unknown = sorted(set(spec) - STUDENT_KEYS)
    if unknown:
        raise ValueError(f"student has unknown key(s) {unknown}; expected keys among {sorted(STUDENT_KEYS)}")
    if own_vocabulary(spec):
        return own_vocabulary_student(spec, dm, id2label or {i: f"LABEL_{i}" for i in range(num_labels or 2)})[0]
    base = teacher
    if "from" in spec:
        base = load_classifier(spec["from"], num_labels=num_labels, id2label=id2label)
    if base is None:
        raise ValueError(
            f"student={spec!r} is made from the teacher, but there is no teacher model (model.teacher is null); "
            "expected 'from' (a model to build it from), a saved student folder, or tokenizer: train"
        )
    if "layers" in spec:
        extra = sorted(set(spec) - {"from", "layers"})
        if extra:
            raise ValueError(f"student: 'layers' cuts an existing model and cannot be combined with {extra}")
        return student_from_layers(base, spec["layers"])
    if "num_layers" not in spec:
        raise ValueError(f"student={spec!r}: expected 'layers' (a list of teacher layers) or 'num_layers'")
    return student_from_config(
        base, spec["num_layers"], spec.get("hidden_size"), spec.get("num_heads"), spec.get("intermediate_size")
    )


def _head_parameters(model: PreTrainedModel) -> list[tuple[str, nn.Parameter]]:
    """Parameters of the classification head: everything outside the base encoder, plus its pooler."""
    prefix = model.base_model_prefix + "."
    return [(n, p) for n, p in model.named_parameters() if not n.startswith(prefix) or ".pooler." in f".{n}"]


#: Checkpoint entries holding module weights: ``state_dict``, and the raw weights Lightning's weight averaging
#: callbacks keep beside the averaged ones (``current_model_state``).
MODULE_STATES = ("state_dict", "current_model_state")


class BaseDistiller(ClfModule):
    """Mix-step distillation: ``loss = alpha * CE(student, labels) + sum_i w_i * adaptor_i(teacher, student)``.

    The data module's transfer rows (``data.unlabeled``, ``data.rest_as_unlabeled``, ``data.augment``) have no label
    (``-100``): the cross-entropy is the mean over the labelled rows of a batch only (0 for a batch without any), so
    ``alpha`` keeps its meaning, while the adaptors learn from the teacher on every row. Before training the teacher
    makes the augmented copies and, with ``cache_teacher_outputs``, labels every row once through its logit store.

    Args:
        teacher: A fine-tuned classifier, or its folder / Hub name; None when the data carries precomputed teacher
            outputs (``--data.teacher_outputs``, :mod:`data.teacher_outputs`; logit adaptors only).
        student: See :func:`make_student`.
        adaptors: Adaptor names, ``(name, weight)`` pairs, dicts with options (``weight``, ``layers``,
            ``temperature``, ...), a ``{name: weight_or_options}`` mapping, or ``Adaptor`` instances.
        dm: The data module (labels, tokenizer saved with checkpoints, tokenizer check).
        alpha: Weight of the hard-label cross-entropy, in [0, 1].
        temperature: Default softmax temperature of logit adaptors that take one.
        lr: Peak learning rate (student and projections).
        weight_decay: AdamW weight decay (not on biases and LayerNorm weights).
        warmup_ratio: Fraction of steps of linear warm-up; then linear decay.
        cache_teacher_outputs: When every adaptor needs only the teacher's logits, compute them once before
            training (:meth:`ClfDataModule.add_teacher_logits`, cached on disk) so steps run the student alone.
        attention_maps: Log, at the end of every validation epoch, the teacher's and the student's attention maps of
            one fixed validation example for the mapped layers, side by side, as an image (wandb ``log_image``,
            TensorBoard ``add_image``). The maps are recomputed from the captured queries and keys. The layers are
            those the adaptors map (the last layers when no adaptor maps any).
        attention_map_example: Index of that example in the validation split.
    """

    #: Adaptor kinds this module accepts, and the parameters it trains.
    allowed_kinds: ClassVar[tuple[str, ...]] = ("logit", "inter")
    stage: ClassVar[str] = "mix-step"
    export_attr = "student"

    def __init__(
        self,
        teacher: PreTrainedModel | str | None = "outputs/teacher",
        student: PreTrainedModel | str | dict[str, Any] = {"layers": [0, 5]},  # noqa: B006 (read-only default)
        adaptors: AdaptorSpec = ("LogitKD",),
        dm: ClfDataModule | None = None,
        alpha: float = 0.5,
        temperature: float = 4.0,
        lr: float = 5e-5,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        cache_teacher_outputs: bool = True,
        attention_maps: bool = False,
        attention_map_example: int = 0,
    ) -> None:
        super().__init__()
        problems = self._check_scalars(alpha, temperature)
        if not isinstance(attention_maps, bool):
            problems.append(f"attention_maps={attention_maps!r}: expected true or false")
        if isinstance(attention_map_example, bool) or not isinstance(attention_map_example, int):
            problems.append(f"attention_map_example={attention_map_example!r}: expected an int index")
        elif dm is not None and not 0 <= attention_map_example < len(dm.raw["validation"]):
            problems.append(
                f"attention_map_example={attention_map_example}: expected an index in "
                f"0..{len(dm.raw['validation']) - 1} (the validation split has {len(dm.raw['validation'])} examples)"
            )
        check_hparams(lr, weight_decay, warmup_ratio, extra=problems)
        num_labels = dm.num_labels if dm is not None else None
        if isinstance(teacher, str):
            teacher = load_classifier(teacher, num_labels=num_labels, require_head=True)
        if teacher is not None:
            check_model_labels(teacher, "teacher", dm)
        student_model = make_student(student, teacher, dm)
        check_model_labels(student_model, "student", dm)
        if dm is not None:  # the exported student carries the data's class names
            student_model.config.id2label, student_model.config.label2id = dm.id2label, dm.label2id
        check_student_vocab(teacher, student_model, student, dm)

        s_dims = ModelDims.from_config(student_model.config)
        t_dims = ModelDims.from_config(teacher.config) if teacher is not None else s_dims
        built = build_adaptors(adaptors, t_dims, s_dims, defaults={"temperature": temperature})
        wrong = [a.name for a in built if a.kind not in self.allowed_kinds]
        if wrong:
            raise ValueError(
                f"{type(self).__name__} ({self.stage}) accepts {'/'.join(self.allowed_kinds)} adaptors; "
                f"got {wrong}, which are {[a.kind for a in built if a.name in wrong]}"
            )
        if dm is not None and dm.transfer_sources and not any(a.weight > 0 for a in built):
            raise ValueError(
                f"the data has a transfer set ({', '.join(f'data.{s}' for s in dm.transfer_sources)}) but "
                f"model.adaptors={[a.name for a in built]} has no adaptor with a weight > 0 to learn from the "
                "teacher's outputs on those unlabelled rows; expected at least one adaptor (e.g. LogitKD), or no "
                "transfer set (--data.unlabeled null --data.augment null --data.rest_as_unlabeled false)"
            )
        check_teacher_source(teacher, student, dm, built, attention_maps, cache_teacher_outputs)
        self.layer_maps = [self._layer_map(a, t_dims, s_dims) for a in built]
        if attention_maps or any(a.needs & {"queries", "keys"} for a in built):
            models = ((teacher, "teacher"), (student_model, "student"))
            positions = [position_problem(m.config, r) for m, r in models if m is not None]
            if any(positions):
                raise ValueError("cannot distil attention:\n" + "\n".join(f"- {p}" for p in positions if p))

        self.save_hyperparameters(ignore=["teacher", "student", "dm", "adaptors"])
        self.hparams["adaptors"] = [{"name": a.name, "weight": a.weight} for a in built]
        self.hparams["student_layers"] = s_dims.num_layers
        if dm is not None:  # logged with the hyperparameters: what the run trains on
            self.hparams["train_rows"] = dm.train_rows()
        # The frozen teacher stays in eval mode (no dropout; see train()). Lightning counts its submodules in the model
        # summary's "Modules in eval mode" line, by design, and warns about them at fit start: on_fit_start explains
        # and silences exactly that warning.
        self.teacher = teacher.eval().requires_grad_(False) if teacher is not None else None
        self.student = student_model.train()
        self.adaptors = nn.ModuleList(built)
        self.dm = dm
        self.alpha = float(alpha)
        self._freeze()
        self._make_taps()
        self.init_metrics(self.label_names(teacher, dm), teacher=True)
        self.use_teacher_cache = False
        self.strict_loading = False  # the frozen teacher is not stored in checkpoints

    # ------------------------------------------------------------------ construction checks
    def _check_scalars(self, alpha: float, temperature: float) -> list[str]:
        problems = []
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
            problems.append(f"alpha={alpha!r}: expected a number in [0, 1]")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature <= 0:
            problems.append(f"temperature={temperature!r}: expected a number > 0")
        return problems

    def _layer_map(self, adaptor: Adaptor, t: ModelDims, s: ModelDims) -> list[tuple[int, int]]:
        if adaptor.default_layers is None and adaptor.layers is None:
            return []
        return resolve_layer_map(
            adaptor.layers,
            t.num_layers,
            s.num_layers,
            default=adaptor.default_layers or "uniform",
            field=f"adaptors[{adaptor.name}].layers",
        )

    def _freeze(self) -> None:
        """Mix-step trains the whole student."""

    def _make_taps(self) -> None:
        needs = set().union(*(a.needs for a in self.adaptors)) - {"logits"}
        self.t_taps = self.s_taps = None
        if needs:
            t_layers = sorted({t for m in self.layer_maps for _, t in m})
            s_layers = sorted({s for m in self.layer_maps for s, _ in m})
            self.t_taps = ModelTaps(self.teacher, needs, t_layers)
            self.s_taps = ModelTaps(self.student, needs, s_layers)

    def remove_taps(self) -> None:
        """Remove the forward hooks from teacher and student (e.g. before reusing the models elsewhere)."""
        for taps in (self.t_taps, self.s_taps):
            if taps is not None:
                taps.remove()
        self.t_taps = self.s_taps = None

    def setup(self, stage: str) -> None:
        """Make the teacher's transfer rows (augmented copies) and attach cached teacher logits to the data when only
        logits are needed (and caching is on) or when the data balances its transfer rows on them."""
        dm = self.trainer.datamodule if self._trainer is not None else None
        if isinstance(dm, ClfDataModule) and self.teacher is not None:
            dm.prepare_transfer(self.teacher)  # the augmented copies, from the teacher's word embeddings
        self.use_teacher_cache = bool(
            self.hparams.cache_teacher_outputs and self.t_taps is None and isinstance(dm, ClfDataModule)
        )
        if self.teacher is None:  # the data carries the teacher's outputs (data.teacher_outputs)
            self.use_teacher_cache = True
        elif self.use_teacher_cache or (isinstance(dm, ClfDataModule) and dm.balance is not None):
            # data.balance repeats transfer rows by the teacher's top class: the teacher labels them before training;
            # the student alone (no adaptors) needs the teacher's logits only for its metrics on the other splits
            alone = not self.adaptors and dm.balance is None
            splits = [s for s in dm.raw if s != "train"] if alone else None
            dm.add_teacher_logits(self.teacher, device=self.trainer.strategy.root_device, splits=splits)

    def on_fit_start(self) -> None:
        """Silence Lightning's "Found N module(s) in eval mode at the start of training" for exactly the teacher.

        Lightning 2.6 warns (``PossibleUserWarning``, ``FitLoop._warn_if_modules_in_eval_mode``) about every submodule
        in eval mode when training starts. The frozen teacher is in eval mode on purpose: without dropout it gives its
        inference outputs. When the modules in eval mode are the teacher's and no others, this fit ignores the
        warning with that exact count (until :meth:`on_train_start`); any other module in eval mode (a student left
        in eval mode) still warns.
        """
        in_eval = [name for name, module in self.named_modules() if not module.training]
        if in_eval and all(name == "teacher" or name.startswith("teacher.") for name in in_eval):
            self._eval_warning_filter = warnings.catch_warnings()
            self._eval_warning_filter.__enter__()
            warnings.filterwarnings(
                "ignore", message=rf"Found {len(in_eval)} module\(s\) in eval mode at the start of training"
            )

    def on_train_start(self) -> None:
        """Restore the warning filters :meth:`on_fit_start` changed."""
        context = self.__dict__.pop("_eval_warning_filter", None)
        if context is not None:
            context.__exit__(None, None, None)

    def on_fit_end(self) -> None:
        """Restore the warning filters if training never started (e.g. ``max_steps=0``)."""
        self.on_train_start()

    # ------------------------------------------------------------------ the shared step
    def train(self, mode: bool = True) -> BaseDistiller:
        """Switch the student (and projections) to ``mode``; the teacher always stays in eval mode."""
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    @staticmethod
    def _gather(
        raw: dict[str, Any], logits: torch.Tensor, mask: torch.Tensor, needs: frozenset, layers: list[int]
    ) -> Taps:
        fields: dict[str, Any] = {"attention_mask": mask, "logits": logits}
        if "embeddings" in needs:
            fields["embeddings"] = raw["embeddings"]
        for name in ("hidden", "queries", "keys", "values"):
            if name in needs:
                fields[name] = torch.stack([raw[name][i] for i in layers])
        return Taps(**fields)

    def distill(
        self, batch: dict[str, torch.Tensor], teacher: bool = True
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor | None]:
        """Run teacher (frozen, ``no_grad``; or its cached logits) and student on one batch and compare them.

        Args:
            batch: A batch of the data module (``input_ids``, ``attention_mask``, ``labels``, ...; with the teacher
                cache on, the teacher's logits).
            teacher: Whether the teacher's logits are wanted without an adaptor to compare them (the metrics of
                an evaluation step). With no adaptors and ``teacher=False`` the teacher does not run.

        Returns:
            Every adaptor's unweighted loss by adaptor name (see :meth:`adaptor_losses`), the student's logits and
            the teacher's logits (None when the teacher did not run). The training step weighs the losses and adds
            the hard-label CE (:meth:`total_loss`).
        """
        inputs = model_inputs(batch)
        t_raw: dict[str, Any] = {}
        if not teacher and not self.adaptors:  # the student alone: nothing to compare
            return {}, self.student(**inputs).logits, None
        if (self.use_teacher_cache or self.teacher is None) and TEACHER_LOGITS in batch:
            t_logits = batch[TEACHER_LOGITS]
        else:
            with torch.no_grad():
                t_logits = self.teacher(**inputs).logits
                t_raw = self.t_taps.pop() if self.t_taps is not None else {}
        s_logits = self.student(**inputs).logits
        s_raw = self.s_taps.pop() if self.s_taps is not None else {}
        return self.adaptor_losses(t_raw, t_logits, s_raw, s_logits, batch["attention_mask"]), s_logits, t_logits

    def adaptor_losses(
        self,
        t_raw: dict[str, Any],
        t_logits: torch.Tensor,
        s_raw: dict[str, Any],
        s_logits: torch.Tensor,
        mask: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Every adaptor's unweighted loss, by name, from what teacher and student exposed for one batch.

        Args:
            t_raw: The teacher's captured tensors in :meth:`helper.taps.ModelTaps.pop` form (``{"hidden": {layer:
                tensor}, ...}``), whether recorded by the hooks or built another way.
            t_logits: Teacher logits.
            s_raw: The student's captured tensors, same form.
            s_logits: Student logits.
            mask: Attention mask of the batch.
        """
        losses = {}
        for adaptor, layer_map in zip(self.adaptors, self.layer_maps, strict=True):
            t = self._gather(t_raw, t_logits, mask, adaptor.needs, [tl for _, tl in layer_map])
            s = self._gather(s_raw, s_logits, mask, adaptor.needs, [sl for sl, _ in layer_map])
            losses[adaptor.name] = adaptor(t, s)
        return losses

    def total_loss(self, losses: dict[str, torch.Tensor], s_logits: torch.Tensor, labels: torch.Tensor) -> dict:
        """The training loss of a batch from its adaptor losses: ``sum_i w_i * adaptor_i + alpha * hard-label loss``.

        Args:
            losses: Each adaptor's loss by name (:meth:`adaptor_losses`, :meth:`distill`).
            s_logits: The student's logits, for the hard-label loss (over the labelled rows only).
            labels: The batch's labels (``-100`` / NaN for transfer rows).

        Returns:
            ``distill_<name>`` per adaptor, ``distill_loss`` (their weighted sum), ``ce`` (the hard-label loss, only
            when ``alpha > 0``) and ``loss`` (the total to minimise).
        """
        parts = {f"distill_{k}": v for k, v in losses.items()}
        distill = sum(a.weight * losses[a.name] for a in self.adaptors)
        parts["distill_loss"] = distill
        total = distill
        if self.alpha > 0:  # mean over the labelled rows (transfer rows are -100); 0, not NaN, when there is none
            # the hard-label loss of the task (CE, BCE-with-logits or MSE; logged as "ce"), labelled rows only
            parts["ce"] = self.hard_label_loss(s_logits, labels)
            total = total + self.alpha * parts["ce"]
        parts["loss"] = total
        return parts

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One distillation step; logs every adaptor's loss by name, the total and the learning rate."""
        losses, s_logits, _ = self.distill(batch, teacher=False)
        parts = self.total_loss(losses, s_logits, batch["labels"])
        size = len(batch["labels"])
        parts["labelled_fraction"] = labelled_rows(batch["labels"]).float().mean()
        self.log_dict({f"train_{k}": v for k, v in parts.items() if k != "loss"}, batch_size=size)
        self.log_train_loss(parts["loss"], size)
        return parts["loss"]

    def _evaluate(self, batch: dict[str, torch.Tensor], split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The evaluation step shared by validation and test: logs ``<split>_loss`` (student CE) and
        ``<split>_distill_loss``; returns student and teacher logits for the metrics."""
        losses, s_logits, t_logits = self.distill(batch)
        parts = self.total_loss(losses, s_logits, batch["labels"])
        size = len(batch["labels"])
        ce = parts["ce"] if "ce" in parts else self.hard_label_loss(s_logits, batch["labels"])  # computed once
        self.log(f"{split}_loss", ce, prog_bar=split == "val", sync_dist=True, batch_size=size)
        self.log(f"{split}_distill_loss", parts["distill_loss"], sync_dist=True, batch_size=size)
        return s_logits, t_logits

    def on_validation_epoch_end(self) -> None:
        """Log the student's metrics every epoch, the teacher's the first time, and the attention maps if asked."""
        super().on_validation_epoch_end()
        if self.hparams.attention_maps and not self.trainer.sanity_checking and self.trainer.is_global_zero:
            self.log_attention_maps()

    def attention_map_pairs(self) -> list[tuple[int, int]]:
        """The ``(student_layer, teacher_layer)`` pairs drawn: every pair an adaptor maps, else the last layers."""
        pairs = sorted({pair for layer_map in self.layer_maps for pair in layer_map})
        if pairs:
            return pairs
        return [(self.student.config.num_hidden_layers - 1, self.teacher.config.num_hidden_layers - 1)]

    def attention_maps(self) -> AttentionMaps:
        """Teacher and student attention (mean over heads) of the fixed validation example, for the mapped layers."""
        dm = self.dm if self.dm is not None else getattr(self.trainer, "datamodule", None)
        if dm is None:
            raise ValueError("attention_maps needs the data module (dm) to pick the validation example")
        dm.setup()
        row = dm.tokenized["validation"][self.hparams.attention_map_example]
        inputs = {k: v[None].to(self.device) for k, v in model_inputs(row).items()}
        pairs = self.attention_map_pairs()
        student_was_training = self.student.training
        self.student.eval()
        try:
            t_maps = capture_attention(self.teacher, inputs, [t for _, t in pairs])
            s_maps = capture_attention(self.student, inputs, [s for s, _ in pairs])
        finally:
            self.student.train(student_was_training)
        ids = inputs["input_ids"][0][inputs["attention_mask"][0].bool()].tolist()
        tokens = dm.tokenizer.convert_ids_to_tokens(ids)
        return AttentionMaps(pairs, [t_maps[t] for _, t in pairs], [s_maps[s] for s, _ in pairs], tokens)

    def log_attention_maps(self) -> None:
        """Draw :meth:`attention_maps` and log the image with the trainer's loggers."""
        image = render(self.attention_maps(), title=f"epoch {self.current_epoch}, step {self.global_step}")
        caption = f"validation example {self.hparams.attention_map_example}, epoch {self.current_epoch}"
        skipped = log_image(self.loggers, "attention_maps", image, self.global_step, caption)
        if skipped and not getattr(self, "_warned_attention_maps", False):
            self._warned_attention_maps = True
            rank_zero_warn(
                f"attention_maps: loggers {skipped} cannot log images (use WandbLogger or TensorBoardLogger)"
            )

    def trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """The student's parameters and the adaptors' projections (frozen ones are skipped by the optimizer)."""
        return [*self.student.named_parameters(), *self.adaptors.named_parameters(prefix="adaptors")]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Leave the frozen teacher out and describe the student as the exported Hugging Face model.

        Lightning's weight averaging callbacks (``EMAWeightAveraging``) put the averaged weights in ``state_dict`` and
        the raw ones in ``current_model_state``; the teacher is left out of both.
        """
        for key in MODULE_STATES:
            if key in checkpoint:
                checkpoint[key] = {k: v for k, v in checkpoint[key].items() if not k.startswith("teacher.")}
        super().on_save_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Put the live teacher's weights back into the checkpoint's module states before callbacks read them.

        The model itself loads non-strictly, but a weight averaging callback loads its averaged copy of the whole
        module (teacher included) strictly, on resume and when the best checkpoint is tested.
        """
        super().on_load_checkpoint(checkpoint)
        if self.teacher is None:
            return
        teacher = {f"teacher.{k}": v for k, v in self.teacher.state_dict().items()}
        for key in MODULE_STATES:
            if key in checkpoint:
                checkpoint[key] = {**teacher, **checkpoint[key]}


class InterDistiller(BaseDistiller):
    """Two-step distillation, step 1: intermediate adaptors only; the student's classification head stays fixed.

    Takes the same arguments as :class:`BaseDistiller`; ``alpha`` must be 0 (no hard-label loss in this step).
    """

    allowed_kinds = ("inter",)
    stage = "two-step, step 1"

    def __init__(self, *args: Any, alpha: float = 0.0, **kwargs: Any) -> None:
        if alpha != 0:
            raise ValueError(f"alpha={alpha!r}: InterDistiller trains intermediate layers only; expected alpha=0")
        super().__init__(*args, alpha=0.0, **kwargs)

    def _freeze(self) -> None:
        for _, param in _head_parameters(self.student):
            param.requires_grad_(False)


class PredDistiller(BaseDistiller):
    """Two-step distillation, step 2: logit adaptors (plus optional CE); only the classification head trains.

    The student's embeddings and encoder layers are frozen; its pooler and classifier train. Takes the same
    arguments as :class:`BaseDistiller` (typically ``student`` is the folder exported by step 1).
    """

    allowed_kinds = ("logit",)
    stage = "two-step, step 2"

    def _freeze(self) -> None:
        self.student.requires_grad_(False)
        for _, param in _head_parameters(self.student):
            param.requires_grad_(True)
