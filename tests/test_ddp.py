"""Scale out: a 2-process DDP distillation (gloo, CPU; each rank with its own teacher and teacher-logit cache) ends
with the same student as 1 process with the same global batch; so does fine-tuning."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from tests.conftest import REPO_ROOT, tiny_bert

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}


def launch(script: str, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        str(REPO_ROOT / script),
        *args,
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
    ]
    return subprocess.run(cmd, cwd=workdir, env=ENV, capture_output=True, text=True, timeout=900)


@pytest.fixture
def teacher(tmp_path: Path, minilm_path: str) -> Path:
    """A tiny teacher without dropout (dropout masks are drawn per process, so they could never match)."""
    model = tiny_bert(layers=4, hidden=64, heads=4)
    model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = 0.0
    model.save_pretrained(tmp_path / "teacher")
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(tmp_path / "teacher")
    return tmp_path / "teacher"


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def assert_ddp_matches_one_process(script: str, root: Path, common: list[str], export: str) -> None:
    """Run ``script`` as 1 process of batch 16 and as 2 gloo processes of batch 8; the exported weights must agree."""
    single = launch(script, root / "single", *common, "--data.batch_size=16", "--trainer.devices=1")
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = launch(script, root / "ddp", *common, "--data.batch_size=8", "--trainer.devices=2", "--trainer.strategy=ddp")
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "world_size=2" in ddp.stderr or "distributed_backend=gloo" in ddp.stderr
    expected, actual = weights(root / "single" / export), weights(root / "ddp" / export)
    for name, tensor in expected.items():
        torch.testing.assert_close(actual[name], tensor, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.slow
def test_two_process_ddp_distillation_matches_one_process(tmp_path: Path, teacher: Path):
    common = [
        f"--model.teacher={teacher}",
        "--model.student={layers: [0, 3]}",
        "--model.adaptors=[LogitKD]",  # per-example means: the average over ranks equals the global mean
        "--model.alpha=0.5",
        "--data.dataset=demo",
        "--data.max_train_samples=64",
        "--data.max_eval_samples=32",
        "--trainer.max_epochs=2",
        "--trainer.accelerator=cpu",
        "--trainer.callbacks.init_args.dirpath=student",
    ]
    assert_ddp_matches_one_process("distillation_ms.py", tmp_path, common, "student")


@pytest.mark.slow
def test_two_process_ddp_finetuning_matches_one_process(tmp_path: Path, teacher: Path):
    common = [
        f"--model.model={teacher}",
        "--data.dataset=demo",
        "--data.max_train_samples=64",
        "--data.max_eval_samples=32",
        "--trainer.max_epochs=1",
        "--trainer.accelerator=cpu",
        "--trainer.callbacks.init_args.dirpath=model",
    ]
    assert_ddp_matches_one_process("finetune.py", tmp_path, common, "model")
