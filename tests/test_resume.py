"""Crash and resume: a distillation killed with SIGKILL mid-epoch and resumed from its last checkpoint ends with the
same student as an uninterrupted run with the same seed; the same config and seed give the same result twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from safetensors.torch import load_file

from tests.tiny import REPO_ROOT, quick_trainer, save_tiny_model, subprocess_env, tiny_bert


class KillAtStep(pl.Callback):
    """Kills its own process with SIGKILL (no cleanup, no final save) after training step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: D102
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


CALLBACKS = """trainer:
  callbacks:
  - class_path: pytorch_lightning.callbacks.ModelCheckpoint
    init_args: {dirpath: ckpts, monitor: null, every_n_train_steps: 2, save_last: true}
  - class_path: helper.checkpoint.HgExport
    init_args: {dirpath: student}
"""


def distil(workdir: Path, *extra: str, callbacks: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run distillation_ms.py on a tiny teacher in ``workdir`` (checkpoints every 2 steps, export to student/)."""
    (workdir / "callbacks.yaml").write_text(CALLBACKS + "".join(f"  - {c}\n" for c in callbacks))
    args = [
        sys.executable,
        str(REPO_ROOT / "distillation_ms.py"),
        f"--config={REPO_ROOT / 'configs' / 'distillation_ms.yaml'}",
        "--config=callbacks.yaml",
        f"--model.teacher={workdir.parent / 'teacher'}",
        "--model.student={layers: [0, 3]}",
        "--model.adaptors=[HidnTinyBERT, LogitKD]",
        "--data.dataset=demo",
        "--data.max_train_samples=96",
        "--data.max_eval_samples=32",
        "--data.batch_size=16",
        "--trainer.max_epochs=2",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        *extra,
    ]
    return subprocess.run(args, cwd=workdir, env=subprocess_env(), capture_output=True, text=True, timeout=600)


@pytest.fixture
def teacher_root(tmp_path: Path, minilm_path: str) -> Path:
    """A tiny teacher folder (dropout on, so resuming must also restore the random state)."""
    save_tiny_model(tmp_path / "teacher", minilm_path, layers=4, hidden=64, heads=4)
    return tmp_path


#: Lightning's EMA weight averaging: checkpoints hold averaged and raw weights, the teacher left out of both.
EMA = "{class_path: pytorch_lightning.callbacks.EMAWeightAveraging, init_args: {decay: 0.9}}"


@pytest.mark.slow
@pytest.mark.parametrize("averaging", [(), (EMA,)], ids=["plain", "ema"])
def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(teacher_root: Path, averaging: tuple[str, ...]):
    reference, crashed = teacher_root / "reference", teacher_root / "crashed"
    reference.mkdir()
    crashed.mkdir()
    done = distil(reference, callbacks=averaging)
    assert done.returncode == 0, done.stderr[-3000:]

    killer = "{class_path: tests.test_resume.KillAtStep, init_args: {step: 9}}"
    killed = distil(crashed, callbacks=(*averaging, killer))  # 6 batches per epoch: step 9 is mid second epoch
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (crashed / "student").exists()
    assert HgCkptIO_state_step(crashed / "ckpts" / "last.ckpt") == 8

    resumed = distil(crashed, f"--ckpt_path={crashed / 'ckpts' / 'last.ckpt'}", callbacks=averaging)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "not resumable" not in resumed.stderr
    expected = load_file(str(reference / "student" / "model.safetensors"))
    actual = load_file(str(crashed / "student" / "model.safetensors"))
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(actual[name], tensor, rtol=1e-5, atol=1e-6, msg=name)


def HgCkptIO_state_step(folder: Path) -> int:  # noqa: N802
    """The global step stored in a checkpoint folder."""
    from helper.checkpoint import HgCkptIO

    return HgCkptIO().load_checkpoint(folder)["global_step"]


def test_same_config_and_seed_give_the_same_run_twice(teacher_root: Path, monkeypatch: pytest.MonkeyPatch):
    from helper.cli import run
    from helper.distiller import BaseDistiller

    results = []
    for attempt in ("first", "second"):
        workdir = teacher_root / attempt
        workdir.mkdir()
        monkeypatch.chdir(workdir)
        cli = run(
            BaseDistiller,
            "distillation_ms.yaml",
            tokenizer_from="model.teacher",
            args=[
                f"--model.teacher={teacher_root / 'teacher'}",
                "--model.student={layers: [0, 3]}",
                "--model.adaptors=[AttnMiniLM, HidnTinyBERT, LogitKD]",
                "--data.dataset=demo",
                "--data.max_train_samples=48",
                "--data.max_eval_samples=32",
                "--data.batch_size=16",
                "--trainer.max_epochs=2",
                "--trainer.logger=false",
                "--trainer.enable_progress_bar=false",
            ],
        )
        metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
        results.append((metrics, {k: v.clone() for k, v in cli.model.student.state_dict().items()}))
    (first_metrics, first_weights), (second_metrics, second_weights) = results
    assert first_metrics == second_metrics and "val_acc" in first_metrics
    for name, tensor in first_weights.items():
        assert torch.equal(second_weights[name], tensor), name


def test_resume_restores_the_width_projection(tmp_path: Path, minilm_path: str):
    """A checkpoint restores the adaptor's learned projection (it is not part of the exported student) exactly."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    from data.data_module import ClfDataModule
    from helper.checkpoint import HgCkptIO
    from helper.distiller import BaseDistiller

    dm = ClfDataModule("demo", tokenizer=minilm_path, batch_size=8, max_train_samples=32, max_eval_samples=8)
    teacher = tiny_bert(layers=4, hidden=64, heads=4)

    def distiller(seed: int) -> BaseDistiller:
        torch.manual_seed(seed)  # the projection's random init
        return BaseDistiller(teacher, tiny_bert(layers=2, hidden=32, heads=2, seed=seed), ["HidnTinyBERT"], dm, lr=1e-2)

    def trainer(**kwargs) -> pl.Trainer:
        defaults = {"enable_checkpointing": True, "limit_val_batches": None, "num_sanity_val_steps": 2}
        return quick_trainer(plugins=[HgCkptIO()], **{**defaults, **kwargs})

    trained = distiller(seed=1)
    initial = trained.adaptors[0].proj.weight.detach().clone()
    trainer(max_steps=3, callbacks=[ModelCheckpoint(dirpath=tmp_path, save_last=True)]).fit(trained, dm)
    saved = {k: v.detach().clone() for k, v in trained.adaptors.state_dict().items()}
    assert not torch.equal(saved["0.proj.weight"], initial)  # it trained

    resumed = distiller(seed=2)
    assert not torch.equal(resumed.adaptors[0].proj.weight, saved["0.proj.weight"])  # other init before the resume
    resume_trainer = trainer(max_steps=3, enable_checkpointing=False)
    resume_trainer.fit(resumed, dm, ckpt_path=str(tmp_path / "last.ckpt"))  # restores, nothing left to train
    assert resume_trainer.global_step == 3
    for name, value in saved.items():
        assert torch.equal(resumed.adaptors.state_dict()[name], value), name
    for name, value in trained.student.state_dict().items():
        assert torch.equal(resumed.student.state_dict()[name], value), name
    state = resume_trainer.optimizers[0].state
    proj = resumed.adaptors[0].proj.weight
    assert proj in state and state[proj]["exp_avg"].abs().sum() > 0  # the projection's AdamW moments came back too
