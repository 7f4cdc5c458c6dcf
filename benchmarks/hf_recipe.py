"""The conventional KD recipe as a Hugging Face ``Trainer`` subclass, and a timed ``train()`` of it.

The loss is ``alpha·CE + (1-alpha)·T²·KL(softmax(t/T) ‖ softmax(s/T))`` (:func:`recipe_loss`); ``throughput.py``
times it against the project's distillers.
"""

from __future__ import annotations

import argparse
import tempfile
from typing import Any

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback

from benchmarks.clocks import HFClock, Settings, window_sample
from benchmarks.interleave import Sample
from benchmarks.memory_meter import MemoryMeter
from benchmarks.pieces import Batch
from data.data_module import TEACHER_LOGITS, ClfDataModule


def recipe_loss(
    student: torch.nn.Module, teacher: torch.nn.Module, inputs: Batch, alpha: float, temperature: float
) -> tuple[torch.Tensor, Any]:
    """The conventional KD recipe's loss: ``alpha·CE + (1-alpha)·T²·KL(softmax(t/T) ‖ softmax(s/T))``.

    The student computes its own cross-entropy from ``labels`` (Hugging Face style); the teacher runs under
    ``no_grad``; the KL is summed over classes and averaged over the batch.

    Args:
        student: The student classifier (trainable).
        teacher: The teacher classifier (eval mode).
        inputs: Model inputs with ``labels``.
        alpha: Weight of the hard-label cross-entropy.
        temperature: Softmax temperature ``T``.

    Returns:
        The loss and the student's outputs.
    """
    outputs = student(**inputs)
    with torch.no_grad():
        t_logits = teacher(**{k: v for k, v in inputs.items() if k != "labels"}).logits
    log_p_s = F.log_softmax(outputs.logits.float() / temperature, dim=-1)
    p_t = F.softmax(t_logits.float() / temperature, dim=-1)
    kd = F.kl_div(log_p_s, p_t, reduction="batchmean") * temperature**2
    return alpha * outputs.loss + (1 - alpha) * kd, outputs


class KDRecipeTrainer(Trainer):
    """The conventional KD recipe: a ``transformers.Trainer`` whose ``compute_loss`` adds a soft-target KL term.

    Args:
        *args: ``Trainer`` arguments (the student is ``model``).
        teacher: The teacher classifier, already on the training device.
        alpha: Weight of the hard-label cross-entropy.
        temperature: Softmax temperature.
        **kwargs: ``Trainer`` keyword arguments.
    """

    def __init__(self, *args: Any, teacher: PreTrainedModel, alpha: float, temperature: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.teacher = teacher.eval()
        self.alpha = alpha
        self.temperature = temperature
        self.batch_shapes: list[tuple[int, int]] = []  # benchmark bookkeeping: (batch size, padded length) per call

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        """``alpha·CE + (1-alpha)·T²·KL`` (see :func:`recipe_loss`)."""
        self.batch_shapes.append(tuple(inputs["input_ids"].shape))
        loss, outputs = recipe_loss(model, self.teacher, inputs, self.alpha, self.temperature)
        return (loss, outputs) if return_outputs else loss


def hf_recipe_train(
    student: PreTrainedModel,
    teacher: PreTrainedModel,
    dm: ClfDataModule,
    args: argparse.Namespace,
    settings: Settings,
) -> tuple[Sample, str]:
    """``KDRecipeTrainer.train()`` for ``warmup + steps`` steps on random batches of the same training data, timed.

    Returns:
        The timed window and a note (threads seen in the loop, the HF-reported speed of the whole ``train()``).

    Raises:
        ImportError: When ``accelerate`` (required by ``transformers.Trainer``) is missing.
    """
    train = dm.tokenized["train"]
    if TEACHER_LOGITS in train.column_names:
        train = train.remove_columns(TEACHER_LOGITS)
    clock = HFClock(args.warmup, args.steps, settings)
    with tempfile.TemporaryDirectory(prefix="hf-recipe-") as out_dir:
        training_args = TrainingArguments(
            output_dir=out_dir,
            max_steps=args.warmup + args.steps,
            per_device_train_batch_size=args.batch_size,
            learning_rate=args.lr,
            weight_decay=args.weight_decay,
            bf16=settings.bf16,
            use_cpu=settings.device.type == "cpu",
            seed=args.seed,
            report_to="none",
            save_strategy="no",
            logging_strategy="no",
            eval_strategy="no",
            disable_tqdm=True,
            dataloader_num_workers=0,
        )
        trainer = KDRecipeTrainer(
            model=student,
            args=training_args,
            train_dataset=train.with_format(None),
            processing_class=dm.tokenizer,
            callbacks=[clock],
            teacher=teacher,
            alpha=args.alpha,
            temperature=args.temperature,
        )
        trainer.remove_callback(PrinterCallback)  # it would print the final metrics dict
        meter = MemoryMeter(settings.device)
        meter.start()
        output = trainer.train()
    sample = window_sample(clock.window, trainer.batch_shapes, meter)
    reported = output.metrics.get("train_samples_per_second")
    note = (
        f"threads seen in the loop: {sorted(clock.window.threads)}; HF-reported train_samples_per_second (whole "
        f"train(), setup and warm-up included): {reported}"
    )
    return sample, note
