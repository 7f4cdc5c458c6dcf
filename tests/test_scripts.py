"""End to end through the command-line scripts: the packaged MiniLM on ../shared/data, outputs chained in tmp dirs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import pipeline

from tests.conftest import REPO_ROOT, shared_data

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}


def script(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run one of the top-level scripts in ``cwd`` and return the finished process."""
    cmd = [sys.executable, str(REPO_ROOT / name), *args]
    return subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=900)


def quick(out: Path, run: str) -> list[str]:
    """Overrides for a short run writing under ``out``."""
    return [
        "--trainer.max_steps=3",
        "--trainer.limit_val_batches=2",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={out / 'runs' / run}",
        f"--trainer.callbacks.init_args.dirpath={out / 'outputs' / run}",
        "--data.max_train_samples=48",
        "--data.max_eval_samples=32",
        "--data.batch_size=16",
    ]


def checkpoint_dir(out: Path, run: str) -> list[str]:
    """Point the first callback (ModelCheckpoint) at a run folder of ``out``."""
    return [f"--trainer.callbacks.0.init_args.dirpath={out / 'runs' / run / 'checkpoints'}"]


@pytest.mark.slow
def test_finetune_then_both_distillation_paths_on_rte(tmp_path):
    """finetune.py -> distillation_ms.py, and -> distillation_ts_1st.py -> distillation_ts_2nd.py, on RTE pairs."""
    rte = str(shared_data("rte"))
    data = [f"--data.dataset={rte}", "--data.label_names=[entailment,not_entailment]"]
    teacher = tmp_path / "outputs" / "teacher"
    done = script("finetune.py", *quick(tmp_path, "teacher"), *data, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (teacher / "model.safetensors").is_file() and (teacher / "tokenizer.json").is_file()
    assert list((tmp_path / "runs" / "teacher").rglob("config.yaml")), "resolved config not saved beside the run"

    common = [f"--model.teacher={teacher}", *data]
    done = script("distillation_ms.py", *quick(tmp_path, "student_ms"), *common, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    done = script("distillation_ts_1st.py", *quick(tmp_path, "student_ts1"), *common, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    step1 = tmp_path / "outputs" / "student_ts1"
    done = script(
        "distillation_ts_2nd.py", *quick(tmp_path, "student_ts"), *common, f"--model.student={step1}", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]

    for run in ("student_ms", "student_ts"):
        clf = pipeline("text-classification", model=str(tmp_path / "outputs" / run))
        assert clf.model.config.num_hidden_layers == 2
        prediction = clf({"text": "A man is sleeping.", "text_pair": "Nobody is asleep."})
        assert prediction["label"] in ("entailment", "not_entailment")


@pytest.mark.slow
def test_rerun_refuses_to_overwrite_an_export(tmp_path):
    teacher = tmp_path / "outputs" / "teacher"
    teacher.mkdir(parents=True)
    (teacher / "config.json").write_text("{}")
    done = script("finetune.py", *quick(tmp_path, "teacher"), cwd=tmp_path)
    assert done.returncode != 0
    assert "already holds a model" in done.stderr
    assert (teacher / "config.json").read_text() == "{}"


def test_missing_teacher_fails_before_training(tmp_path):
    done = script("distillation_ms.py", "--model.teacher=outputs/none", "--trainer.logger=false", cwd=tmp_path)
    assert done.returncode != 0
    assert "No local folder 'outputs/none' exists" in done.stderr  # offline: neither a local folder nor the Hub
    assert not (tmp_path / "runs").exists()
