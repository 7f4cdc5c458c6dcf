"""Attention maps on the dashboard: recomputed from the taps, equal to the model's own attention, logged as images."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.loggers.logger import Logger

from data.data_module import ClfDataModule, model_inputs
from helper.attention_maps import capture_attention, render
from helper.distiller import BaseDistiller
from tests.tiny import quick_trainer


@pytest.fixture
def dm(toy_dataset, minilm_path) -> ClfDataModule:
    return ClfDataModule(toy_dataset, tokenizer=minilm_path, batch_size=8)


class ImageLogger(Logger):
    """A logger with wandb's ``log_image`` signature that keeps what it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[tuple[str, np.ndarray, int, list[str]]] = []

    name = "images"
    version = 0

    def log_image(self, key: str, images: list, step: int | None = None, caption: list | None = None) -> None:
        self.images.append((key, images[0], step, caption))

    def log_metrics(self, metrics, step=None) -> None:  # noqa: D102
        pass

    def log_hyperparams(self, params, *args, **kwargs) -> None:  # noqa: D102
        pass


def test_maps_equal_the_models_own_attention(dm, tiny_teacher):
    """Recomputed from hooked q/k on an SDPA model = eager output_attentions, averaged over heads, real tokens only."""
    dm.setup()
    row = dm.tokenized["validation"][3]
    inputs = {k: v[None] for k, v in model_inputs(row).items()}
    maps = capture_attention(tiny_teacher, inputs, [1, 3])
    eager = copy.deepcopy(tiny_teacher).eval()
    eager.set_attn_implementation("eager")
    with torch.no_grad():
        attentions = eager(**inputs, output_attentions=True).attentions
    n = int(inputs["attention_mask"].sum())
    for layer in (1, 3):
        expected = attentions[layer][0].mean(dim=0)[:n, :n]
        torch.testing.assert_close(maps[layer], expected, rtol=1e-4, atol=1e-5)
        assert maps[layer].shape == (n, n)


def test_distiller_logs_teacher_and_student_maps_each_validation_epoch(dm, tiny_teacher, tiny_student):
    distiller = BaseDistiller(tiny_teacher, tiny_student, ["HidnTinyBERT", "LogitKD"], dm, attention_maps=True)
    assert distiller.attention_map_pairs() == [(0, 1), (1, 3)]  # HidnTinyBERT's uniform map
    maps = distiller.attention_maps()
    assert [m.shape for m in maps.teacher] == [m.shape for m in maps.student]
    assert not torch.allclose(maps.teacher[1], maps.student[1])  # different models, different maps
    assert maps.tokens[0] == "[CLS]"
    logger = ImageLogger()
    # sanity check + 3 validations (val_check_interval=1)
    quick_trainer(logger=logger, max_steps=3, val_check_interval=1, num_sanity_val_steps=2).fit(distiller, dm)
    keys = [key for key, *_ in logger.images]
    assert keys == ["attention_maps"] * 3  # none from the sanity check
    key, image, step, caption = logger.images[-1]
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.std() > 0 and step == 3 and caption == ["validation example 0, epoch 0"]


def test_logit_only_distiller_draws_the_last_layers(dm, tiny_teacher, tiny_student):
    distiller = BaseDistiller(tiny_teacher, tiny_student, ["LogitKD"], dm, attention_maps=True, attention_map_example=2)
    assert distiller.attention_map_pairs() == [(1, 3)]
    image = render(distiller.attention_maps(), title="x")
    assert image.shape[2] == 3 and image.std() > 0


def test_maps_reach_tensorboard(tmp_path, dm, tiny_teacher, tiny_student):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    distiller = BaseDistiller(tiny_teacher, tiny_student, ["AttnMiniLM"], dm, attention_maps=True)
    logger = TensorBoardLogger(tmp_path, name="tb")
    quick_trainer(logger=logger, max_steps=1, val_check_interval=1, num_sanity_val_steps=2).fit(distiller, dm)
    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0})
    events.Reload()
    assert events.Tags()["images"] == ["attention_maps"]
    (image,) = events.Images("attention_maps")
    assert image.step == 1 and image.width > 100 and image.height > 100


def test_bad_attention_map_settings_are_reported(dm, tiny_teacher, tiny_student):
    with pytest.raises(ValueError) as info:
        BaseDistiller(tiny_teacher, tiny_student, ["LogitKD"], dm, attention_maps="yes", attention_map_example=99)
    message = str(info.value)
    assert "attention_maps='yes': expected true or false" in message
    assert "attention_map_example=99: expected an index in 0..7" in message
