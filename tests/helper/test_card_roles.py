"""The exported card's role, base model and teacher for students that do not derive from a teacher checkpoint."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from helper.checkpoint import HF_KEY, HgExport
from helper.models import student_from_config, student_from_layers
from tests.tiny import tiny_bert


def _card(tmp_path: Path, student, teacher, dm) -> object:
    folder = tmp_path / "export"
    student.save_pretrained(folder)  # the weights the card counts
    module = SimpleNamespace(student=student, teacher=teacher, hparams={}, dm=dm)
    trainer = SimpleNamespace(global_step=3, current_epoch=0, datamodule=dm)
    checkpoint = {HF_KEY: {"config": student.config.to_dict()}, "global_step": 3, "epoch": 0}
    return HgExport(dirpath=str(folder)).card_info(trainer, module, checkpoint, folder)


def test_a_random_student_from_a_config_names_no_base_model(tmp_path: Path):
    teacher = tiny_bert(layers=4)
    teacher.name_or_path = "sentence-transformers/all-MiniLM-L6-v2"
    dm = SimpleNamespace(hparams={}, source_name="demo", outputs=None)
    layers = _card(tmp_path / "a", student_from_layers(teacher, [0, 3]), teacher, dm)
    assert layers.role == "student" and layers.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    random = _card(tmp_path / "b", student_from_config(teacher, 2, 32, 2), teacher, dm)
    assert random.role == "student" and random.base_model is None


def test_a_student_of_teacher_outputs_names_the_outputs_file(tmp_path: Path):
    teacher = tiny_bert(layers=4)
    dm = SimpleNamespace(hparams={}, source_name="demo", outputs=SimpleNamespace(files=[Path("llm_outputs.jsonl")]))
    card = _card(tmp_path, student_from_config(teacher, 2, 32, 2), None, dm)
    assert card.role == "student" and card.base_model is None
    assert card.teacher == "teacher outputs from llm_outputs.jsonl"
