"""The scripts' command-line layer: test-split evaluation of the best checkpoint after fitting, and the summary."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EMAWeightAveraging
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from helper.checkpoint import TRAINER_STATE, FolderInUseError, claim_folders
from helper.cli import (
    name_checkpoint_folders,
    run,
    run_folders,
    wandb_has_credentials,
    wandb_offline_without_credentials,
)
from helper.distiller import BaseDistiller
from helper.finetuner import ClfFinetune
from tests.tiny import REPO_ROOT, save_tiny_model

POS = ["a wonderful film", "great acting and a warm story", "i loved every minute", "funny and smart", "a joy"]
NEG = ["a dull mess", "boring and far too long", "i hated the ending", "clumsy and flat", "a chore"]
# "Best" = highest val_loss (mode max): while training lowers the loss that is an early checkpoint, never the last
# weights, so a test that evaluated the last weights instead would be caught.
CALLBACKS = """trainer:
  callbacks:
  - class_path: pytorch_lightning.callbacks.ModelCheckpoint
    init_args: {dirpath: ckpts, monitor: val_loss, mode: max, save_top_k: 1, save_last: true}
"""
COMMON = [
    "--config=callbacks.yaml",  # after the script's own YAML (HgCkptIO: checkpoints are Hugging Face folders)
    "--model.lr=0.005",
    "--data.max_length=16",
    "--data.batch_size=8",
    "--trainer.max_epochs=3",
    "--trainer.logger=false",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
]


def _base(script: str) -> str:
    return f"--config={REPO_ROOT / 'configs' / f'{script}.yaml'}"


def _write(folder: Path, split: str, rows: list[tuple[str, int]]) -> None:
    with (folder / f"{split}.jsonl").open("w") as f:
        for text, label in rows:
            f.write(json.dumps({"sentence": text, "label": label}) + "\n")


@pytest.fixture
def workdir(tmp_path: Path, minilm_path: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny teacher classifier folder, data with train/validation/test (and an unlabelled test), cwd = tmp."""
    data = tmp_path / "data"
    data.mkdir()
    rows = [(t, 1) for t in POS] + [(t, 0) for t in NEG]
    _write(data, "train", rows * 3)
    _write(data, "validation", rows[::2])
    _write(data, "test", [(t + " indeed", y) for t, y in rows])
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    _write(unlabelled, "train", rows * 3)
    _write(unlabelled, "validation", rows[::2])
    _write(unlabelled, "test", [(t, -1) for t, _ in rows])
    teacher = tmp_path / "teacher"
    save_tiny_model(teacher, minilm_path, layers=2, hidden=32, heads=2)
    (tmp_path / "callbacks.yaml").write_text(CALLBACKS)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _evaluate(folder: str | Path, data: Path) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of a saved classifier folder on data/test.jsonl, computed without Lightning."""
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    rows = [json.loads(line) for line in (data / "test.jsonl").read_text().splitlines()]
    enc = tokenizer([r["sentence"] for r in rows], padding=True, truncation=True, max_length=16, return_tensors="pt")
    labels = torch.tensor([r["label"] for r in rows])
    with torch.no_grad():
        logits = model(**enc).logits
    return (logits.argmax(-1) == labels).float().mean().item(), torch.nn.functional.cross_entropy(logits, labels).item()


class FinalWeights(pl.Callback):
    """Keeps a copy of the trained model's weights as they are when fitting ends (before the test loads "best")."""

    def __init__(self, attribute: str) -> None:
        self.attribute, self.weights = attribute, {}

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:  # noqa: D102
        model = getattr(pl_module, self.attribute)
        self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}


def _check_best_was_tested(cli, attribute: str, final: FinalWeights, data: Path) -> None:
    """The tested weights are the best checkpoint's, not the final ones, and test_acc/test_loss are theirs."""
    best = cli.trainer.checkpoint_callback.best_model_path
    metrics = cli.trainer.callback_metrics
    acc, ce = _evaluate(best, data)  # 10 test rows: one batch, so the logged mean is this mean
    assert float(metrics["test_acc"]) == pytest.approx(acc, abs=1e-6)
    assert float(metrics["test_loss"]) == pytest.approx(ce, rel=1e-5)
    tested = getattr(cli.model, attribute).state_dict()
    best_weights = AutoModelForSequenceClassification.from_pretrained(best).state_dict()
    assert all(torch.equal(tested[k], v) for k, v in best_weights.items())
    assert final.weights and not all(torch.equal(tested[k], v) for k, v in final.weights.items())


def test_finetune_evaluates_the_best_checkpoint_on_the_test_split(workdir: Path, capsys: pytest.CaptureFixture):
    final = FinalWeights("model")
    cli = run(
        ClfFinetune,
        "finetune.yaml",
        args=[
            _base("finetune"),
            f"--model.model={workdir / 'teacher'}",
            "--data.dataset=data",
            "--data.test_split=test",
            *COMMON,
        ],
        extra_callbacks=[final],
    )
    best = cli.trainer.checkpoint_callback.best_model_path
    metrics = cli.trainer.callback_metrics
    assert {"test_acc", "test_f1", "test_loss"} <= set(metrics)
    _check_best_was_tested(cli, "model", final, workdir / "data")
    out = capsys.readouterr().out
    assert "val_acc" in out and "(last validation)" in out
    assert "Summary" in out and f"best checkpoint  {best}" in out
    last = cli.trainer.checkpoint_callback.last_model_path
    assert Path(last).name == "last.ckpt"
    assert f"last checkpoint  {last}  (to resume this run: --ckpt_path {last})" in out
    assert "test split       'test', 10 examples, best checkpoint" in out
    assert f"test_acc         {float(metrics['test_acc']):.4f}" in out


def _distil(workdir: Path, adaptors: str, callback: pl.Callback):
    """Distil the tiny teacher into its layer 1 with ``adaptors``, the test split set, ``callback`` added."""
    return run(
        BaseDistiller,
        "distillation_ms.yaml",
        tokenizer_from="model.teacher",
        args=[
            _base("distillation_ms"),
            f"--model.teacher={workdir / 'teacher'}",
            "--model.student={layers: [1]}",
            f"--model.adaptors={adaptors}",
            "--data.dataset=data",
            "--data.test_split=test",
            *COMMON,
        ],
        extra_callbacks=[callback],
    )


def test_distiller_logs_student_and_teacher_test_metrics(workdir: Path, capsys: pytest.CaptureFixture):
    final = FinalWeights("student")
    cli = _distil(workdir, "[HidnTinyBERT, LogitKD]", final)
    metrics = cli.trainer.callback_metrics
    assert {"test_acc", "test_f1", "teacher_test_acc", "teacher_test_f1"} <= set(metrics)
    _check_best_was_tested(cli, "student", final, workdir / "data")
    teacher_acc, _ = _evaluate(workdir / "teacher", workdir / "data")
    assert float(metrics["teacher_test_acc"]) == pytest.approx(teacher_acc, abs=1e-6)
    out = capsys.readouterr().out
    assert "teacher_test_acc" in out and "test_f1" in out


def test_with_weight_averaging_the_test_evaluates_the_averaged_weights(workdir: Path):
    """Lightning's EMA callback keeps raw and averaged weights in each checkpoint; validation and the export use the
    averaged ones, and so must the test (left in place, the callback would load the raw ones for it)."""
    cli = _distil(workdir, "[LogitKD]", EMAWeightAveraging(decay=0.5))
    best = cli.trainer.checkpoint_callback.best_model_path
    averaged = AutoModelForSequenceClassification.from_pretrained(best).state_dict()
    state = torch.load(Path(best) / TRAINER_STATE, weights_only=False)
    raw = {k.removeprefix("student."): v for k, v in state["current_model_state"].items() if k.startswith("student.")}
    assert any(not torch.equal(raw[k], v) for k, v in averaged.items() if k in raw), "raw and averaged weights agree"
    tested = cli.model.student.state_dict()
    assert all(torch.equal(tested[k], v) for k, v in averaged.items())
    acc, ce = _evaluate(best, workdir / "data")
    metrics = cli.trainer.callback_metrics
    assert float(metrics["test_acc"]) == pytest.approx(acc, abs=1e-6)
    assert float(metrics["test_loss"]) == pytest.approx(ce, rel=1e-5)
    assert any(isinstance(c, EMAWeightAveraging) for c in cli.trainer.callbacks)  # put back after the test


@pytest.mark.parametrize(
    ("args", "note"),
    [
        (["--data.dataset=data"], "test split       none (set data.test_split"),
        (
            ["--data.dataset=data", "--data.test_split=test", "--test_after_fit=false"],
            "skipped (test_after_fit: false)",
        ),
        (["--data.dataset=unlabelled", "--data.test_split=test"], "'test' has no labels (all -1), not evaluated"),
    ],
    ids=["no-test-split", "switched-off", "unlabelled"],
)
def test_no_test_evaluation(workdir: Path, capsys: pytest.CaptureFixture, args: list[str], note: str):
    cli = run(
        ClfFinetune,
        "finetune.yaml",
        args=[_base("finetune"), f"--model.model={workdir / 'teacher'}", *args, *COMMON, "--trainer.max_epochs=1"],
    )
    assert not any(k.startswith("test_") for k in cli.trainer.callback_metrics)
    assert note in capsys.readouterr().out


def test_wandb_logs_offline_without_credentials(workdir: Path, monkeypatch: pytest.MonkeyPatch):
    """No API key, no netrc entry and WANDB_MODE unset: the run's WandbLogger writes an offline run folder."""
    home = workdir / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # no ~/.netrc (and wandb's settings and cache stay in the tmp folder)
    for var in ("WANDB_API_KEY", "WANDB_MODE", "NETRC", "WANDB_DIR"):
        monkeypatch.delenv(var, raising=False)  # restored after the test, WANDB_MODE included
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(home / var.lower()))
    assert not wandb_has_credentials()
    cli = run(
        ClfFinetune,
        "finetune.yaml",
        args=[
            _base("finetune"),  # its logger is a WandbLogger with save_dir runs/finetune
            f"--model.model={workdir / 'teacher'}",
            "--data.dataset=data",
            "--data.max_length=16",
            "--data.batch_size=8",
            "--trainer.max_steps=1",
            "--trainer.limit_val_batches=1",
            "--trainer.num_sanity_val_steps=0",
            "--trainer.enable_checkpointing=false",
            "--trainer.callbacks=[]",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            "--test_after_fit=false",
        ],
    )
    assert os.environ["WANDB_MODE"] == "offline"
    logger = cli.trainer.logger
    assert type(logger).__name__ == "WandbLogger"
    logger.experiment.finish()  # flush and close the offline run
    runs = list((workdir / "runs" / "finetune" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, sorted(p.name for p in (workdir / "runs" / "finetune").rglob("*"))[:20]
    assert any(runs[0].glob("*.wandb"))  # the run's log, to upload later with `wandb sync`


def test_wandb_switch_leaves_credentials_and_an_explicit_mode_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    switch = wandb_offline_without_credentials  # what the CLI does before building anything
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("WANDB_API_KEY", "WANDB_MODE", "NETRC"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    switch()
    assert wandb_has_credentials() and "WANDB_MODE" not in os.environ
    monkeypatch.delenv("WANDB_API_KEY")
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "x" * 40 + "\n")
    (tmp_path / ".netrc").chmod(0o600)
    switch()
    assert wandb_has_credentials() and "WANDB_MODE" not in os.environ
    (tmp_path / ".netrc").unlink()
    monkeypatch.setenv("WANDB_MODE", "disabled")
    switch()
    assert not wandb_has_credentials() and os.environ["WANDB_MODE"] == "disabled"
    monkeypatch.delenv("WANDB_MODE")
    switch()
    assert os.environ["WANDB_MODE"] == "offline"


def test_a_run_refuses_folders_another_live_run_writes_to(workdir: Path, minilm_path: str):
    """A second run with the first one's checkpoint folder stops before training, naming the flag and the folder;
    once the first run has ended its folders are free again."""
    args = [_base("finetune"), f"--model.model={workdir / 'teacher'}", "--data.dataset=data", *COMMON]
    with claim_folders({"--other-run": workdir / "ckpts"}), pytest.raises(FolderInUseError) as err:
        run(ClfFinetune, "finetune.yaml", args=args)
    flag = "trainer.callbacks[0] (ModelCheckpoint) dirpath"
    assert f"{flag} = {str((workdir / 'ckpts').resolve())!r}" in str(err.value)
    assert not (workdir / "ckpts").exists()
    run(ClfFinetune, "finetune.yaml", args=[*args, "--trainer.max_epochs=1"])
    with claim_folders({"--next-run": workdir / "ckpts"}):  # released when the run ended
        assert any((workdir / "ckpts").iterdir())


def test_run_folders_names_each_checkpoint_and_export_flag():
    """Checkpoint and export callbacks with a dirpath are named by their index; others, and no dirpath, are not."""
    from jsonargparse import Namespace

    callbacks = [
        Namespace(class_path="pytorch_lightning.callbacks.ModelCheckpoint", init_args=Namespace(dirpath="runs/c")),
        Namespace(class_path="pytorch_lightning.callbacks.ModelCheckpoint", init_args=Namespace(dirpath=None)),
        Namespace(class_path="helper.step_rate.StepRate", init_args=Namespace()),
        Namespace(class_path="helper.checkpoint.HgExport", init_args=Namespace(dirpath="outputs/s")),
    ]
    assert run_folders(callbacks) == {
        "trainer.callbacks[0] (ModelCheckpoint) dirpath": "runs/c",
        "trainer.callbacks[3] (HgExport) dirpath": "outputs/s",
    }
    assert run_folders(None) == {}


def test_checkpoints_follow_the_export_so_runs_of_one_config_run_at_once(workdir: Path):
    """The shipped config leaves the checkpoint folders unset: they become runs/<job>/checkpoints/<export name>, so a
    second run of the same config with another export folder runs while the first holds its folders."""
    args = [_base("finetune"), f"--model.model={workdir / 'teacher'}", "--data.dataset=data", *COMMON[1:]]
    first = workdir / "runs" / "finetune" / "checkpoints" / "seed43"
    with claim_folders({"--the seed-43 run": first}):  # still going
        cli = run(
            ClfFinetune,
            "finetune.yaml",
            args=[*args, "--trainer.max_epochs=1", "--trainer.callbacks.dirpath=outputs/seed44"],
        )
    folder = (workdir / "runs" / "finetune" / "checkpoints" / "seed44").resolve()
    assert [Path(c.dirpath).resolve() for c in cli.trainer.checkpoint_callbacks] == [folder, folder]
    assert Path(cli.trainer.checkpoint_callback.best_model_path).parent.resolve() == folder
    assert (workdir / "outputs" / "seed44" / "config.json").is_file()
    assert "runs/finetune/checkpoints/seed44" in (workdir / "runs" / "finetune" / "config.yaml").read_text()
    assert not first.exists()


def test_a_dirpath_given_in_a_config_is_kept():
    from jsonargparse import Namespace

    callbacks = [
        Namespace(class_path="pytorch_lightning.callbacks.ModelCheckpoint", init_args=Namespace(dirpath="mine")),
        Namespace(class_path="pytorch_lightning.callbacks.ModelCheckpoint", init_args=Namespace(dirpath=None)),
        Namespace(class_path="helper.checkpoint.HgExport", init_args=Namespace(dirpath="outputs/student_s43")),
    ]
    name_checkpoint_folders(callbacks, "runs/job")
    derived = str(Path("runs/job/checkpoints/student_s43"))
    assert [c.init_args.dirpath for c in callbacks] == ["mine", derived, "outputs/student_s43"]
    alone = [Namespace(class_path="pytorch_lightning.callbacks.ModelCheckpoint", init_args=Namespace(dirpath=None))]
    name_checkpoint_folders(alone, "runs/job")  # no export: Lightning's own default stays
    assert alone[0].init_args.dirpath is None
