"""Tests for helper.checkpoint: Hugging Face-format checkpoint folders, resuming, atomic writes and HgExport."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from pytorch_lightning.callbacks import ModelCheckpoint
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

import helper.checkpoint as ckpt_mod
from data.data_module import ClfDataModule
from helper.checkpoint import TRAINER_STATE, WEIGHTS, HgCkptIO, HgExport
from helper.finetuner import ClfFinetune
from tests.tiny import REPO_ROOT, quick_trainer, tiny_bert

LABELS = ["negative", "positive"]


def toy_data() -> DatasetDict:
    pos = ["a wonderful film", "great acting and a warm story", "i loved every minute", "funny and smart"]
    neg = ["a dull mess", "boring and far too long", "i hated the ending", "clumsy and flat"]
    feats = Features({"sentence": Value("string"), "label": ClassLabel(names=LABELS)})
    train = Dataset.from_dict({"sentence": pos * 2 + neg * 2, "label": [1] * 8 + [0] * 8}, features=feats)
    val = Dataset.from_dict({"sentence": pos + neg, "label": [1] * 4 + [0] * 4}, features=feats)
    return DatasetDict(train=train, validation=val)


def make_dm(tokenizer) -> ClfDataModule:
    return ClfDataModule(toy_data(), tokenizer=tokenizer, batch_size=4, max_length=16)


def make_trainer(max_steps: int, callbacks: list, **kwargs) -> pl.Trainer:
    """A quick trainer that checkpoints through ``HgCkptIO`` (with the ``callbacks`` that save)."""
    options = {"enable_checkpointing": True, **kwargs}
    return quick_trainer(max_steps=max_steps, plugins=[HgCkptIO()], callbacks=callbacks, **options)


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def model_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    model.train(was_training)
    return out


@dataclass
class Trained:
    module: ClfFinetune
    trainer: pl.Trainer
    dm: ClfDataModule
    ckpt_dir: Path
    folder: Path  # the checkpoint written after the last step


@pytest.fixture(scope="module")
def tokenizer(minilm_path: str):
    return AutoTokenizer.from_pretrained(minilm_path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Trained:
    ckpt_dir = tmp_path_factory.mktemp("ckpts")
    dm = make_dm(tokenizer)
    module = ClfFinetune(tiny_bert(layers=2, hidden=32, heads=2, seed=3), dm, lr=1e-3)
    callback = ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=1, save_top_k=-1)
    trainer = make_trainer(2, [callback])
    trainer.fit(module, dm)
    return Trained(module, trainer, dm, ckpt_dir, ckpt_dir / "epoch=0-step=2.ckpt")


# ---------------------------------------------------------------------------------------------- folder contents
def test_checkpoint_is_a_hugging_face_folder(trained: Trained) -> None:
    assert sorted(p.name for p in trained.ckpt_dir.iterdir()) == ["epoch=0-step=1.ckpt", "epoch=0-step=2.ckpt"]
    folder = trained.folder
    assert folder.is_dir()
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", WEIGHTS, TRAINER_STATE, "tokenizer.json", "tokenizer_config.json"} <= names
    config = json.loads((folder / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert config["label2id"] == {"negative": 0, "positive": 1}
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["num_hidden_layers"] == 2


def test_trainer_state_holds_no_model_weights(trained: Trained) -> None:
    state = torch.load(trained.folder / TRAINER_STATE, weights_only=False)
    assert not [k for k in state["state_dict"] if k.startswith("model.")]
    assert state["global_step"] == 2
    assert state["optimizer_states"] and state["lr_schedulers"]
    assert "tokenizer_files" not in state["hf_export"]
    weights = load_file(str(trained.folder / WEIGHTS))
    assert weights.keys() == trained.module.model.state_dict().keys()


def test_from_pretrained_gives_the_trained_logits(trained: Trained) -> None:
    batch = next(iter(trained.dm.val_dataloader()))
    loaded = AutoModelForSequenceClassification.from_pretrained(trained.folder)
    expected = model_logits(trained.module.model, batch)
    torch.testing.assert_close(model_logits(loaded, batch), expected, rtol=0, atol=0)
    older = AutoModelForSequenceClassification.from_pretrained(trained.ckpt_dir / "epoch=0-step=1.ckpt")
    assert not torch.equal(model_logits(older, batch), expected)  # each step's folder has its own weights


def test_pipeline_opens_the_folder_offline(trained: Trained) -> None:
    clf = pipeline("text-classification", model=str(trained.folder), device="cpu")
    out = clf(["a wonderful film", "a dull mess"])
    assert len(out) == 2
    assert {o["label"] for o in out} <= set(LABELS)
    assert all(0.0 <= o["score"] <= 1.0 for o in out)


def test_load_checkpoint_restores_the_full_state_dict(trained: Trained) -> None:
    checkpoint = HgCkptIO().load_checkpoint(trained.folder)
    module_state = trained.module.state_dict()
    assert checkpoint["state_dict"].keys() == module_state.keys()
    for key, value in module_state.items():
        assert torch.equal(checkpoint["state_dict"][key], value), key


# ---------------------------------------------------------------------------------------------- resuming
class StepRecorder(pl.Callback):
    def __init__(self) -> None:
        self.start_step: int | None = None
        self.start_weights: dict[str, torch.Tensor] = {}
        self.batches = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start_step = trainer.global_step
        self.start_weights = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}

    def on_train_batch_end(self, *args, **kwargs) -> None:
        self.batches += 1


# The resumed run saves to a new folder on purpose; Lightning says it will not reload the old folder's top-k state.
@pytest.mark.filterwarnings("ignore:The dirpath has changed from:UserWarning")
def test_resume_from_a_folder_continues(trained: Trained, tokenizer, tmp_path: Path) -> None:
    dm = make_dm(tokenizer)
    module = ClfFinetune(tiny_bert(layers=2, hidden=32, heads=2, seed=99), dm, lr=1e-3)
    recorder = StepRecorder()
    trainer = make_trainer(4, [recorder, ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=1, save_top_k=-1)])
    trainer.fit(module, dm, ckpt_path=str(trained.folder))
    assert recorder.start_step == 2
    assert trainer.global_step == 4
    assert recorder.batches == 2  # only the remaining steps ran
    saved = load_file(str(trained.folder / WEIGHTS))
    for key, value in recorder.start_weights.items():  # the checkpoint's weights, not the fresh model's
        assert torch.equal(value, saved[key]), key
    assert (tmp_path / "epoch=0-step=4.ckpt" / "config.json").is_file()


def test_save_top_k_removes_older_folders(tokenizer, tmp_path: Path) -> None:
    dm = make_dm(tokenizer)
    module = ClfFinetune(tiny_bert(layers=1, hidden=32, heads=2), dm, lr=1e-3)
    trainer = make_trainer(3, [ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=1, save_top_k=1)])
    trainer.fit(module, dm)
    assert [p.name for p in tmp_path.iterdir()] == ["epoch=0-step=3.ckpt"]


# ---------------------------------------------------------------------------------------------- atomic writes
@pytest.fixture
def saved_target(trained: Trained, tmp_path: Path) -> Path:
    target = tmp_path / "epoch=0-step=2.ckpt"
    trained.trainer.save_checkpoint(target)
    assert (target / "config.json").is_file()
    return target


def _disk_full(*args, **kwargs):
    raise OSError("disk full")


@pytest.mark.parametrize("fail", ["weights", "trainer_state"])
def test_failed_save_leaves_the_previous_checkpoint_intact(
    trained: Trained, saved_target: Path, monkeypatch: pytest.MonkeyPatch, fail: str
) -> None:
    before = folder_bytes(saved_target)
    with torch.no_grad():  # make the next save different from the existing one
        trained.module.model.classifier.bias.add_(1.0)
    try:
        if fail == "weights":
            monkeypatch.setattr(ckpt_mod, "save_file", _disk_full)
        else:
            monkeypatch.setattr(ckpt_mod.torch, "save", _disk_full)
        with pytest.raises(OSError, match="disk full"):
            trained.trainer.save_checkpoint(saved_target)
    finally:
        monkeypatch.undo()
        with torch.no_grad():
            trained.module.model.classifier.bias.sub_(1.0)
    assert folder_bytes(saved_target) == before
    assert leftovers(saved_target.parent) == []
    AutoModelForSequenceClassification.from_pretrained(saved_target)
    assert HgCkptIO().load_checkpoint(saved_target)["global_step"] == 2


def test_successful_save_replaces_and_cleans_up(trained: Trained, saved_target: Path) -> None:
    (saved_target / "stray.txt").write_text("from an older save")
    trained.trainer.save_checkpoint(saved_target)
    assert not (saved_target / "stray.txt").exists()  # the folder is replaced as a whole
    assert leftovers(saved_target.parent) == []


def test_failed_second_rename_restores_the_previous_checkpoint(
    trained: Trained, saved_target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the old folder was moved aside; the new one cannot be moved into place
            raise OSError("power cut")
        return real_replace(src, dst)

    monkeypatch.setattr(ckpt_mod.os, "replace", replace)
    with pytest.raises(OSError, match="power cut"):
        trained.trainer.save_checkpoint(saved_target)
    monkeypatch.undo()
    assert saved_target.exists()  # the previous version was moved back into place
    assert [p.name for p in saved_target.parent.iterdir() if ".old-" in p.name] == []
    assert [p.name for p in saved_target.parent.iterdir() if ".tmp-" in p.name] == []
    checkpoint = HgCkptIO().load_checkpoint(saved_target)
    assert checkpoint["global_step"] == 2
    assert torch.equal(checkpoint["state_dict"]["model.classifier.weight"], trained.module.model.classifier.weight)


def test_fallback_to_old_copy_and_missing_checkpoint(trained: Trained, tmp_path: Path) -> None:
    target = tmp_path / "epoch=0-step=2.ckpt"
    shutil.copytree(trained.folder, tmp_path / f".{target.name}.old-1234abcd")
    checkpoint = HgCkptIO().load_checkpoint(target)
    assert checkpoint["global_step"] == 2
    assert "model.classifier.weight" in checkpoint["state_dict"]
    with pytest.raises(FileNotFoundError, match="not found"):
        HgCkptIO().load_checkpoint(tmp_path / "other.ckpt")


def test_plain_checkpoints_without_export_entry(tmp_path: Path) -> None:
    io = HgCkptIO()
    checkpoint = {"state_dict": {"w": torch.arange(3.0)}, "epoch": 4}
    io.save_checkpoint(checkpoint, tmp_path / "plain.ckpt")
    assert [p.name for p in (tmp_path / "plain.ckpt").iterdir()] == [TRAINER_STATE]
    loaded = io.load_checkpoint(tmp_path / "plain.ckpt")
    assert loaded["epoch"] == 4 and torch.equal(loaded["state_dict"]["w"], torch.arange(3.0))
    torch.save(checkpoint, tmp_path / "file.ckpt")  # an ordinary single-file Lightning checkpoint
    assert io.load_checkpoint(tmp_path / "file.ckpt")["epoch"] == 4
    with pytest.raises(TypeError, match="storage_options"):
        io.save_checkpoint(checkpoint, tmp_path / "x.ckpt", storage_options={"a": 1})
    io.remove_checkpoint(tmp_path / "plain.ckpt")
    io.remove_checkpoint(tmp_path / "file.ckpt")
    io.remove_checkpoint(tmp_path / "never-existed.ckpt")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- HgExport
class ScoredFinetune(ClfFinetune):
    """Logs ``score`` = the step index, so ``ModelCheckpoint(monitor='score', mode='min')`` keeps the first step."""

    def training_step(self, batch, batch_idx):
        self.log("score", float(self.global_step), batch_size=len(batch["labels"]))
        return super().training_step(batch, batch_idx)


def test_export_refuses_an_existing_model_before_training(tokenizer, tmp_path: Path) -> None:
    export_dir = tmp_path / "model"
    export_dir.mkdir()
    (export_dir / "config.json").write_text("{}")
    dm = make_dm(tokenizer)
    module = ClfFinetune(tiny_bert(layers=1, hidden=32, heads=2), dm)
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    recorder = StepRecorder()
    trainer = make_trainer(2, [recorder, HgExport(dirpath=str(export_dir))], enable_checkpointing=False)
    with pytest.raises(FileExistsError, match="overwrite=True") as info:
        trainer.fit(module, dm)
    assert str(export_dir) in str(info.value)
    assert recorder.batches == 0 and trainer.global_step == 0
    assert all(torch.equal(v, module.model.state_dict()[k]) for k, v in before.items())
    assert folder_bytes(export_dir) == {"config.json": b"{}"}


def test_export_writes_the_best_checkpoint(tokenizer, tmp_path: Path) -> None:
    export_dir = tmp_path / "export" / "model"
    export_dir.mkdir(parents=True)
    (export_dir / "config.json").write_text("{}")  # replaced because overwrite=True
    dm = make_dm(tokenizer)
    module = ScoredFinetune(tiny_bert(layers=1, hidden=32, heads=2), dm, lr=1e-2)
    checkpoints = ModelCheckpoint(
        dirpath=tmp_path / "ckpts", monitor="score", mode="min", every_n_train_steps=1, save_top_k=1
    )
    export = HgExport(dirpath=str(export_dir), overwrite=True)
    trainer = make_trainer(3, [checkpoints, export])
    trainer.fit(module, dm)

    best = Path(checkpoints.best_model_path)
    assert best.name == "epoch=0-step=1.ckpt"
    assert export.exported == export_dir
    names = {p.name for p in export_dir.iterdir()}
    assert {"config.json", WEIGHTS, "tokenizer.json"} <= names and TRAINER_STATE not in names
    exported = load_file(str(export_dir / WEIGHTS))
    best_weights = load_file(str(best / WEIGHTS))
    assert exported.keys() == best_weights.keys()
    assert all(torch.equal(exported[k], best_weights[k]) for k in exported)
    final = module.model.state_dict()
    assert not torch.equal(exported["classifier.weight"], final["classifier.weight"])  # not the last weights
    assert leftovers(export_dir.parent) == []

    batch = next(iter(dm.val_dataloader()))
    model = AutoModelForSequenceClassification.from_pretrained(export_dir)
    assert model.config.id2label == {0: "negative", 1: "positive"}
    reference = AutoModelForSequenceClassification.from_pretrained(best)
    torch.testing.assert_close(model_logits(model, batch), model_logits(reference, batch), rtol=0, atol=0)
    labels = {o["label"] for o in pipeline("text-classification", model=str(export_dir), device="cpu")(["fine"])}
    assert labels <= set(LABELS)


def test_export_into_an_empty_folder_without_overwrite(tokenizer, tmp_path: Path) -> None:
    export_dir = tmp_path / "model"
    export_dir.mkdir()  # an empty folder is not a model: allowed
    dm = make_dm(tokenizer)
    module = ClfFinetune(tiny_bert(layers=1, hidden=32, heads=2), dm)
    trainer = make_trainer(1, [ModelCheckpoint(dirpath=tmp_path / "ckpts"), HgExport(dirpath=str(export_dir))])
    trainer.fit(module, dm)
    assert (export_dir / "config.json").is_file() and (export_dir / WEIGHTS).is_file()


# ---------------------------------------------------------------------------------------------- model card
class MetricsRecorder(pl.Callback):
    """Records ``val_acc`` at every validation, by step."""

    def __init__(self) -> None:
        self.acc: dict[int, float] = {}

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.acc[trainer.global_step] = float(trainer.callback_metrics["val_acc"])


def test_export_writes_a_model_card_with_the_exported_checkpoints_metrics(tokenizer, tmp_path: Path) -> None:
    from huggingface_hub import ModelCard

    from helper.model_card import read_card_info

    export_dir = tmp_path / "teacher"
    dm = make_dm(tokenizer)
    module = ClfFinetune(tiny_bert(layers=1, hidden=32, heads=2), dm, lr=1e-2)
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpts", monitor="val_loss", mode="min", save_top_k=1)
    recorder = MetricsRecorder()
    trainer = make_trainer(12, [checkpoints, recorder, HgExport(dirpath=str(export_dir))])  # 3 epochs of 4 steps
    trainer.fit(module, dm)
    assert sorted(recorder.acc) == [4, 8, 12]

    card = ModelCard.load(export_dir / "README.md")
    assert card.data.pipeline_tag == "text-classification" and card.data.license == "apache-2.0"
    assert "transformer-distiller" in card.data.tags and card.data.metrics == ["accuracy", "f1"]
    info = read_card_info(export_dir)
    step = torch.load(Path(checkpoints.best_model_path) / TRAINER_STATE, weights_only=False)["global_step"]
    assert info.metrics["accuracy"] == pytest.approx(recorder.acc[step])  # the exported weights' own accuracy
    assert info.recipe["optimizer steps"] == step and info.recipe["lr"] == 1e-2 and info.role == "teacher"
    assert info.labels == LABELS and info.params == sum(p.numel() for p in module.model.parameters())
    assert info.size_mb == pytest.approx((export_dir / WEIGHTS).stat().st_size / 1e6)
    assert card.data.eval_results[0].metric_value == pytest.approx(recorder.acc[step], abs=1e-6)
    assert 'pipeline("text-classification"' in card.text and "onnxruntime" in card.text
    # the card does not get in the way of loading the folder
    assert {o["label"] for o in pipeline("text-classification", model=str(export_dir))(["fine", "bad"])} <= set(LABELS)


def test_student_card_names_teacher_recipe_base_model_and_baseline(tokenizer, tmp_path: Path) -> None:
    from helper.distiller import BaseDistiller
    from helper.model_card import MINILM_HUB_ID, CardInfo, read_card_info, write_model_card

    teacher_dir = tmp_path / "teacher"
    teacher = tiny_bert(layers=2, hidden=32, heads=2)
    teacher.config.id2label, teacher.config.label2id = dict(enumerate(LABELS)), {n: i for i, n in enumerate(LABELS)}
    teacher.save_pretrained(teacher_dir)
    tokenizer.save_pretrained(teacher_dir)
    write_model_card(teacher_dir, CardInfo(name="teacher", role="teacher", base_model=MINILM_HUB_ID))

    # 12 labelled rows; the other 4 of the 16 training rows form the transfer set
    data = toy_data()  # training rows made distinct from the validation ones (transfer rows must not repeat them)
    data["train"] = data["train"].map(lambda row, i: {"sentence": f"{row['sentence']} ({i})"}, with_indices=True)
    dm = ClfDataModule(
        data, tokenizer=tokenizer, batch_size=4, max_length=16, max_train_samples=12, rest_as_unlabeled=True
    )
    module = BaseDistiller(
        str(teacher_dir), {"layers": [1]}, ["LogitKD"], dm, alpha=0.3, temperature=2.0, cache_teacher_outputs=False
    )
    export_dir = tmp_path / "student"
    export = HgExport(dirpath=str(export_dir), baseline={"accuracy": 0.5, "f1_macro": 0.4})
    trainer = make_trainer(4, [ModelCheckpoint(dirpath=tmp_path / "ckpts", monitor="val_loss"), export])
    trainer.fit(module, dm)

    info = read_card_info(export_dir)
    assert info.role == "student" and info.teacher == str(teacher_dir) and info.base_model == MINILM_HUB_ID
    assert info.recipe["adaptors"] == [{"name": "LogitKD", "weight": 1.0}]
    assert info.recipe["alpha"] == 0.3 and info.recipe["temperature"] == 2.0 and info.recipe["stage"] == "mix-step"
    assert info.recipe["student_layers"] == 1 and "teacher accuracy (validation)" in info.recipe
    assert info.recipe["transfer set"] == "rest: 4 rows" and info.recipe["max_train_samples"] == 12
    text = (export_dir / "README.md").read_text()
    assert "base_model: sentence-transformers/all-MiniLM-L6-v2" in text
    assert "| same student trained alone | 50.00 | 40.00 |" in text and f"`{teacher_dir}`" in text
    assert {o["label"] for o in pipeline("text-classification", model=str(export_dir))(["fine"])} <= set(LABELS)


def test_a_failing_card_does_not_cost_the_export(tokenizer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args, **kwargs):
        raise KeyError("hparams")

    monkeypatch.setattr(HgExport, "card_info", broken)
    export_dir = tmp_path / "model"
    dm = make_dm(tokenizer)
    trainer = make_trainer(1, [ModelCheckpoint(dirpath=tmp_path / "ckpts"), HgExport(dirpath=str(export_dir))])
    with pytest.warns(UserWarning, match="model card lacks the run's details"):
        trainer.fit(ClfFinetune(tiny_bert(layers=1, hidden=32, heads=2), dm), dm)
    assert (export_dir / WEIGHTS).is_file() and (export_dir / "README.md").read_text().startswith("---\n")


HOLD = """
import sys, time
from helper.checkpoint import claim_folders
with claim_folders({"--held": sys.argv[1]}):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_folder_held_by_another_live_process_is_refused_until_it_ends(tmp_path: Path) -> None:
    """Another process holds the checkpoint folder: every busy folder is named, none is taken; its end frees it."""
    ckpts, export = tmp_path / "runs" / "checkpoints", tmp_path / "outputs" / "student"
    other = subprocess.Popen([sys.executable, "-c", HOLD, str(ckpts)], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        folders = {"--best": ckpts, "--last": ckpts / ".." / "checkpoints", "--export": export}
        with pytest.raises(ckpt_mod.FolderInUseError) as err, ckpt_mod.claim_folders(folders):
            pass
        message = str(err.value)
        assert f"--best and --last = {str(ckpts.resolve())!r}" in message and "--export" not in message
        assert not (tmp_path / "runs").exists()  # the locks live in the cache: nothing written into the tree
        with ckpt_mod.claim_folders({"--export": export}):  # the free folder was released with the error
            pass
    finally:
        other.kill()
        other.wait()
    with ckpt_mod.claim_folders(folders):  # the OS dropped the dead process's lock: a resume takes the folder
        with pytest.raises(ckpt_mod.FolderInUseError, match="--export"), ckpt_mod.claim_folders({"--export": export}):
            pass  # and within one process the held folder is still refused to a second claim
