"""Scale out: a 2-process DDP distillation (gloo, CPU; each rank with its own teacher and teacher-logit cache) ends
with the same student as 1 process with the same global batch; so does fine-tuning."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

from helper.models import student_from_layers
from tests.tiny import REPO_ROOT, save_tiny_model, subprocess_env


def launch(script: str, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        str(REPO_ROOT / script),
        *args,
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
    ]
    return subprocess.run(cmd, cwd=workdir, env=subprocess_env(), capture_output=True, text=True, timeout=900)


@pytest.fixture
def teacher(tmp_path: Path, minilm_path: str) -> Path:
    """A tiny teacher without dropout (dropout masks are drawn per process, so they could never match)."""
    return save_tiny_model(tmp_path / "teacher", minilm_path, layers=4, hidden=64, heads=4, dropout=0.0)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


RTOL, ATOL = 1e-4, 1e-5


def assert_moved(initial: dict[str, torch.Tensor], trained: dict[str, torch.Tensor]) -> None:
    """Training changed the weights by more than the comparison tolerance in the embeddings, every encoder layer and
    the classifier (else two runs that never trained would "agree")."""
    moved = {n for n, t in trained.items() if not torch.allclose(t, initial[n], rtol=RTOL, atol=ATOL)}
    layers = {n.split(".layer.")[1].split(".")[0] for n in trained if ".encoder.layer." in n}
    parts = ["embeddings.", "classifier.", *(f".encoder.layer.{i}." for i in sorted(layers))]
    for part in parts:
        unchanged = sorted(set(trained) - moved)
        assert any(part in n for n in moved), f"no weight under {part!r} moved; unchanged: {unchanged}"


def assert_ddp_matches_one_process(
    script: str, root: Path, common: list[str], export: str, initial: dict[str, torch.Tensor]
) -> None:
    """Run ``script`` as 1 process of batch 16 and as 2 gloo processes of batch 8; the exported weights must agree,
    and differ from the ``initial`` ones."""
    single = launch(script, root / "single", *common, "--data.batch_size=16", "--trainer.devices=1")
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = launch(script, root / "ddp", *common, "--data.batch_size=8", "--trainer.devices=2", "--trainer.strategy=ddp")
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "world_size=2" in ddp.stderr or "distributed_backend=gloo" in ddp.stderr
    expected, actual = weights(root / "single" / export), weights(root / "ddp" / export)
    assert set(expected) == set(initial), sorted(set(expected) ^ set(initial))
    assert_moved(initial, expected)
    for name, tensor in expected.items():
        torch.testing.assert_close(actual[name], tensor, rtol=RTOL, atol=ATOL, msg=name)


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
    student = student_from_layers(AutoModelForSequenceClassification.from_pretrained(teacher), [0, 3])
    initial = {k: v.contiguous() for k, v in student.state_dict().items()}
    assert_ddp_matches_one_process("distillation_ms.py", tmp_path, common, "student", initial)


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
    assert_ddp_matches_one_process("finetune.py", tmp_path, common, "model", weights(teacher))
