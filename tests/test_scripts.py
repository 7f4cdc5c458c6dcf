"""End to end through the command-line scripts: the packaged MiniLM on ../shared/data, outputs chained in tmp dirs."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import pipeline

from tests.tiny import REPO_ROOT, shared_data, subprocess_env


def script(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run one of the top-level scripts in ``cwd`` and return the finished process."""
    cmd = [sys.executable, str(REPO_ROOT / name), *args]
    return subprocess.run(cmd, cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=900)


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


OFFENSIVE = ["you are an idiot", "shut up, loser", 'what a "stupid" take', "go away, clown", "nobody likes you, fool"]
FRIENDLY = ["have a great day", "thanks for sharing", "lovely photo!", "see you at the game", "congrats on the new job"]


def write_tweets_csv(folder: Path) -> None:
    """A user's own data as people bring it: ``train.csv``/``validation.csv`` with ``tweet,is_offensive`` (NOT/OFF)."""
    folder.mkdir(parents=True)
    for split, rows in (("train", 40), ("validation", 12)):
        with open(folder / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["tweet", "is_offensive"])
            for i in range(rows):
                texts, label = (OFFENSIVE, "OFF") if i % 2 == 0 else (FRIENDLY, "NOT")
                writer.writerow([f"{texts[i % len(texts)]} #{i}", label])


@pytest.mark.slow
def test_csv_with_string_labels_through_finetune_distillation_and_benchmark(tmp_path):
    """CSV strings load as large_string: NOT/OFF labels train a teacher and a student whose configs name the classes."""
    data = tmp_path / "tweets"
    write_tweets_csv(data)
    common = [f"--data.dataset={data}", "--data.label_field=is_offensive"]
    done = script(
        "finetune.py", *quick(tmp_path, "teacher"), *common, '--data.label_names=["NOT", "OFF"]', cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    teacher = tmp_path / "outputs" / "teacher"
    assert json.loads((teacher / "config.json").read_text())["id2label"] == {"0": "NOT", "1": "OFF"}

    # no label names: the CSV's own values, sorted (the config's demo names would be refused, naming these)
    args = [*quick(tmp_path, "student_ms"), f"--model.teacher={teacher}", *common, "--data.label_names=null"]
    done = script("distillation_ms.py", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    student = tmp_path / "outputs" / "student_ms"
    assert json.loads((student / "config.json").read_text())["id2label"] == {"0": "NOT", "1": "OFF"}
    assert pipeline("text-classification", model=str(student))(["you fool"])[0]["label"] in ("NOT", "OFF")

    bench = ["--label-field=is_offensive", "--latency-runs=2", "--warmup=0", "--rounds=1"]
    done = script(
        "benchmark.py", str(teacher), str(student), f"--dataset={data}", *bench, "--output-dir=bench", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    meta = json.loads((tmp_path / "bench" / "results.json").read_text())["meta"]
    assert (meta["examples"], meta["num_labels"]) == (12, 2)


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
