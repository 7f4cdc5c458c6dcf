"""Hugging Face-format checkpoints for Lightning.

A LightningModule that exports a Hugging Face model puts a small ``"hf_export"`` entry into every checkpoint (see
:func:`hf_export_entry`): which ``state_dict`` prefix holds the exported model, its config, and its tokenizer files.
:class:`HgCkptIO` then writes each checkpoint as a folder that ``from_pretrained`` and ``pipeline`` open on their own,
plus one file with the rest of the training state so that ``trainer.fit(..., ckpt_path=folder)`` resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from filelock import FileLock, Timeout
from lightning_fabric.plugins.io.checkpoint_io import CheckpointIO
from pytorch_lightning.utilities import rank_zero_warn
from safetensors.torch import load_file, save_file
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from data.teacher_store import cache_root
from helper.model_card import CardInfo, hub_base_model, write_model_card

HF_KEY = "hf_export"
TRAINER_STATE = "trainer_state.ckpt"
WEIGHTS = "model.safetensors"


def tokenizer_files(tokenizer: PreTrainedTokenizerBase) -> dict[str, bytes]:
    """The files ``save_pretrained`` writes for a tokenizer, as bytes (so a checkpoint carries its tokenizer)."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}


def hf_export_entry(model: PreTrainedModel, prefix: str, tok_files: dict[str, bytes] | None) -> dict[str, Any]:
    """The ``"hf_export"`` checkpoint entry for ``model``, whose weights sit under ``prefix`` in the state dict."""
    model.config.architectures = [type(model).__name__]
    return {"prefix": prefix, "config": model.config.to_dict(), "tokenizer_files": tok_files or {}}


def _split_state(checkpoint: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    export = checkpoint[HF_KEY]
    prefix = export["prefix"]
    weights, rest = {}, {}
    for key, value in checkpoint["state_dict"].items():
        if key.startswith(prefix):
            weights[key[len(prefix) :]] = value
        else:
            rest[key] = value
    return weights, rest


def write_hf_files(checkpoint: dict[str, Any], folder: Path) -> None:
    """Write the Hugging Face model folder (config, safetensors weights, tokenizer) described by ``checkpoint``."""
    export = checkpoint[HF_KEY]
    weights, _ = _split_state(checkpoint)
    seen: set[int] = set()
    tensors = {}
    for name, tensor in weights.items():  # safetensors refuses shared storage; keep the first name of a tied tensor
        ptr = tensor.untyped_storage().data_ptr()
        if ptr in seen:
            continue
        seen.add(ptr)
        tensors[name] = tensor.detach().contiguous().cpu()
    save_file(tensors, str(folder / WEIGHTS), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(export["config"], indent=2, sort_keys=True, default=str))
    for name, data in export.get("tokenizer_files", {}).items():
        (folder / name).write_bytes(data)


def atomic_replace(tmp: Path, target: Path) -> None:
    """Move the finished folder ``tmp`` to ``target``; an existing ``target`` is replaced only after ``tmp`` is whole.

    Between the two renames a crash can leave ``target`` missing with ``.<name>.old-*`` beside it; loading falls back
    to that copy.
    """
    old = None
    if target.exists() or target.is_symlink():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        if old is not None:  # put the previous version back
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())


class HgCkptIO(CheckpointIO):
    """Lightning ``CheckpointIO`` whose checkpoints are Hugging Face model folders.

    Each checkpoint path (e.g. ``epoch=1-step=200.ckpt``) becomes a folder with ``config.json`` (including
    ``id2label``/``label2id``), ``model.safetensors``, the tokenizer files and ``trainer_state.ckpt`` (optimizer,
    schedulers, loops, callbacks, other trainable weights). The folder is written next to the target and renamed into
    place, so a crash or a failed write never replaces a good checkpoint with a broken one.

    Checkpoints without an ``"hf_export"`` entry are written as a single ``trainer_state.ckpt`` in the folder.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` as a Hugging Face folder at ``path``, atomically."""
        if storage_options is not None:
            raise TypeError(f"HgCkptIO does not take storage_options; got {storage_options!r}")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
        tmp.mkdir()
        try:
            state = dict(checkpoint)
            if HF_KEY in checkpoint:
                write_hf_files(checkpoint, tmp)
                _, state["state_dict"] = _split_state(checkpoint)
                state[HF_KEY] = {k: v for k, v in checkpoint[HF_KEY].items() if k != "tokenizer_files"}
            torch.save(state, tmp / TRAINER_STATE)
            _fsync_tree(tmp)
            atomic_replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def load_checkpoint(
        self, path: str | Path, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict:
        """Read a checkpoint folder (or a plain ``.ckpt`` file) back into Lightning's checkpoint dict."""
        source = Path(path)
        if not source.exists():
            stale = sorted(source.parent.glob(f".{source.name}.old-*"), key=lambda p: p.stat().st_mtime)
            if not stale:
                raise FileNotFoundError(f"checkpoint {str(path)!r} not found")
            source = stale[-1]
        if source.is_file():
            return torch.load(source, map_location=map_location, weights_only=False)
        checkpoint = torch.load(source / TRAINER_STATE, map_location=map_location, weights_only=False)
        export = checkpoint.get(HF_KEY)
        if export is not None:
            device = map_location if isinstance(map_location, (str, torch.device)) else "cpu"
            weights = load_file(str(source / WEIGHTS), device=str(device))
            checkpoint["state_dict"].update({export["prefix"] + k: v for k, v in weights.items()})
        return checkpoint

    def remove_checkpoint(self, path: str | Path) -> None:
        """Delete a checkpoint folder (``ModelCheckpoint(save_top_k=...)`` calls this)."""
        target = Path(path)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()


class HgExport(pl.Callback):
    """Writes the best checkpoint's Hugging Face model folder to a fixed place when fitting ends.

    Other scripts can rely on that place (e.g. the distillation configs read the teacher from ``outputs/teacher``).
    An existing model folder there is refused before training starts unless ``overwrite=True``, so re-running a
    finished job never silently replaces its output.

    The folder carries a model card (``README.md``, see :mod:`helper.model_card`): base model, data, teacher and
    recipe (adaptors, alpha, temperature, steps, ...), parameters, size, and the validation metrics of the exported
    (best) checkpoint, recorded at each validation so that they are the exported weights' own.

    Args:
        dirpath: Destination folder.
        overwrite: Replace an existing model folder at ``dirpath``.
        baseline: Validation metrics of the same student trained alone (no teacher), as fractions, e.g.
            ``{"accuracy": 0.853, "f1_macro": 0.852}``: shown in the card beside the distilled student's.
        license: License of the weights stated in the card (SPDX id).
    """

    def __init__(
        self,
        dirpath: str = "outputs/model",
        overwrite: bool = False,
        baseline: dict[str, float] | None = None,
        license: str = "apache-2.0",  # noqa: A002 (the model-card field's name)
    ) -> None:
        self.dirpath = Path(dirpath)
        self.overwrite = overwrite
        self.baseline = dict(baseline) if baseline else None
        self.license = license
        self.exported: Path | None = None
        self._metrics_at_step: dict[int, dict[str, float]] = {}

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Remember this validation's metrics under the step, to describe the checkpoint saved at that step."""
        if trainer.sanity_checking:
            return
        values = {}
        for key, value in trainer.callback_metrics.items():
            if key.startswith(("val_", "teacher_val_")):
                try:
                    values[key] = float(value)
                except (TypeError, ValueError):
                    continue
        self._metrics_at_step[trainer.global_step] = values

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Refuse to start when the destination holds a model and ``overwrite`` is off."""
        if stage == "fit" and (self.dirpath / "config.json").exists() and not self.overwrite:
            raise FileExistsError(
                f"export dirpath {str(self.dirpath)!r} already holds a model; expected an empty or new folder. "
                "Set overwrite=True (e.g. --trainer.callbacks... or the YAML) to replace it, or choose another dirpath"
            )

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Copy the best (else the last) checkpoint's model files to ``dirpath`` atomically."""
        if not trainer.is_global_zero:
            return
        callback = trainer.checkpoint_callback
        best = getattr(callback, "best_model_path", "") or getattr(callback, "last_model_path", "")
        if not best:
            return
        checkpoint = HgCkptIO().load_checkpoint(best)
        if HF_KEY not in checkpoint:
            raise ValueError(f"checkpoint {best!r} has no Hugging Face export entry; the module must provide one")
        self.dirpath.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.dirpath.with_name(f".{self.dirpath.name}.tmp-{uuid.uuid4().hex[:8]}")
        tmp.mkdir()
        try:
            write_hf_files(checkpoint, tmp)
            if not checkpoint[HF_KEY].get("tokenizer_files"):
                src = Path(best)
                for name in os.listdir(src) if src.is_dir() else []:
                    if name not in (TRAINER_STATE, WEIGHTS, "config.json", "README.md"):
                        shutil.copy2(src / name, tmp / name)
            try:
                info = self.card_info(trainer, pl_module, checkpoint, tmp)
            except Exception as err:  # a card must not cost the trained model: fall back to the bare facts
                rank_zero_warn(f"HgExport: the model card lacks the run's details ({type(err).__name__}: {err})")
                info = CardInfo(name=self.dirpath.name, license=self.license)
            write_model_card(tmp, info)
            atomic_replace(tmp, self.dirpath)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.exported = self.dirpath

    def card_info(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any], folder: Path
    ) -> CardInfo:
        """The model card's facts for the exported checkpoint (written into ``folder``)."""
        config = checkpoint[HF_KEY]["config"]
        hp = dict(getattr(pl_module, "hparams", {}) or {})
        teacher = getattr(pl_module, "teacher", None)
        teacher_source = str(getattr(teacher, "name_or_path", "") or "") or None if teacher is not None else None
        own = getattr(pl_module, "model", None)
        student = getattr(pl_module, "student", None)
        if student is not None:  # a distiller's export (its teacher may be only a file of teacher outputs)
            source = str(getattr(student, "name_or_path", "") or "") or None  # teacher layers: the teacher's folder
            role, base = "student", hub_base_model(source) if source else None
        else:
            role, base = "teacher", hub_base_model(getattr(own, "name_or_path", None) or config.get("_name_or_path"))
        recipe: dict[str, Any] = {"stage": getattr(pl_module, "stage", "fine-tuning")}
        if config.get("problem_type") in ("multi_label_classification", "regression"):
            recipe["problem type"] = config["problem_type"]  # the card's usage and metrics follow it
        for key in ("adaptors", "alpha", "temperature", "student_layers", "lr", "weight_decay", "warmup_ratio"):
            if key in hp:
                recipe[key] = hp[key]
        if "cache_teacher_outputs" in hp:
            recipe["teacher logits cached"] = hp["cache_teacher_outputs"]
        recipe["optimizer steps"] = int(checkpoint.get("global_step", trainer.global_step))
        recipe["epochs"] = int(checkpoint.get("epoch", trainer.current_epoch)) + 1
        dm = getattr(pl_module, "dm", None) or getattr(trainer, "datamodule", None)
        dm_hp = dict(getattr(dm, "hparams", {}) or {})
        for key, value in dm_hp.items():  # transfer sets / augmentation, when the data module has them
            if value not in (None, False, [], {}) and any(
                w in key for w in ("transfer", "augment", "unlabel", "balance")
            ):
                recipe[key] = value
        transfer = getattr(dm, "transfer", None)
        if isinstance(transfer, dict) and transfer:  # unlabelled rows the teacher labels (see ClfDataModule)
            recipe["transfer set"] = ", ".join(f"{name}: {len(rows)} rows" for name, rows in transfer.items())
            if getattr(dm, "balance", None) is not None:  # rows repeated by the teacher's top class
                recipe["transfer rows once balanced"] = dm.transfer_rows()
        for key in ("batch_size", "max_length", "max_train_samples"):
            if dm_hp.get(key) is not None:
                recipe[key] = dm_hp[key]
        step = int(checkpoint.get("global_step", trainer.global_step))
        logged = self._metrics_at_step.get(step) or {}
        metrics = {k: logged[m] for k, m in (("accuracy", "val_acc"), ("f1_macro", "val_f1")) if m in logged}
        teacher_acc = logged.get("teacher_val_acc")
        if teacher_acc is None:  # the teacher is evaluated once, at the first validation
            teacher_acc = next(
                (m["teacher_val_acc"] for m in self._metrics_at_step.values() if "teacher_val_acc" in m), None
            )
        if teacher_acc is not None:
            recipe["teacher accuracy (validation)"] = f"{100 * teacher_acc:.2f} %"
        weights = folder / WEIGHTS
        params = sum(t.numel() for t in load_file(str(weights)).values())
        id2label = config.get("id2label") or {}
        labels = [str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(len(id2label))]
        layers = config.get("num_hidden_layers") or config.get("n_layers")
        hidden = config.get("hidden_size") or config.get("dim")
        heads = config.get("num_attention_heads") or config.get("n_heads")
        return CardInfo(
            name=self.dirpath.name,
            role=role,
            labels=labels,
            base_model=base,
            teacher=teacher_source or _outputs_source(dm),
            dataset=str(getattr(dm, "source_name", "")) or None,
            split="validation",
            recipe=recipe,
            params=params,
            size_mb=weights.stat().st_size / 1e6,
            architecture=f"{config.get('model_type')}: {layers} layers, hidden {hidden}, {heads} heads",
            metrics=metrics,
            metrics_source=f"exported checkpoint, step {step}" if metrics else None,
            baseline=self.baseline,
            license=self.license,
        )


def _outputs_source(dm: Any) -> str | None:
    """The teacher of a run with no teacher model: the files of teacher outputs it read (None when there are none)."""
    outputs = getattr(dm, "outputs", None)
    files = [str(f) for f in getattr(outputs, "files", None) or []]
    return f"teacher outputs from {', '.join(files)}" if files else None


class FolderInUseError(RuntimeError):
    """Another run that is still going writes to a folder this run would write to."""


def in_use_lock(folder: str | Path) -> Path:
    """The lock file a run holds while it writes to ``folder`` (see :func:`claim_folders`).

    It lives in the project's cache (``$DISTILLER_CACHE/in_use``, named by a hash of the folder's absolute path), so
    that holding a folder writes nothing into the run's own tree before the run has started.
    """
    key = hashlib.sha1(str(Path(folder).resolve()).encode()).hexdigest()
    return cache_root() / "in_use" / f"{key}.lock"


@contextmanager
def claim_folders(folders: Mapping[str, str | Path]) -> Iterator[None]:
    """Hold the folders a run writes to (checkpoints, export) against other runs while the block runs.

    Two runs in one checkpoint folder overwrite each other's files (both name them ``epoch=E-step=S.ckpt`` and
    ``last.ckpt``), and the test-after-fit and the export may then read the other run's weights; two runs with one
    export folder replace each other's model. Each folder gets an OS file lock (:func:`in_use_lock`; the folder need
    not exist yet); the OS drops it when the process ends, so a crashed run leaves nothing to clean up and is
    resumed as before. Folders named twice (the configs' best and last checkpoints share one) are
    held once.

    Args:
        folders: What sets each folder (a config key or flag, shown in the error) -> the folder.

    Raises:
        FolderInUseError: Some folders are held by another live run: all of them are named, and none is held.
    """
    names: dict[Path, list[str]] = {}
    for name, folder in folders.items():
        names.setdefault(Path(folder).resolve(), []).append(name)
    held: list[FileLock] = []
    busy: list[str] = []
    try:
        for folder, flags in names.items():
            lock_file = in_use_lock(folder)
            lock_file.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(lock_file), timeout=0)
            try:
                lock.acquire()
            except Timeout:
                busy.append(f"{' and '.join(flags)} = {str(folder)!r}")
                continue
            held.append(lock)
        if busy:
            raise FolderInUseError(
                "another run that is still going writes to "
                + "; ".join(busy)
                + ". Expected folders of this run's own (two runs in one folder overwrite each other's checkpoints"
                " and exports): give this run another export folder (--trainer.callbacks.dirpath in the shipped"
                " configs; their checkpoints follow it), or wait for that run to end"
            )
        yield
    finally:
        for lock in reversed(held):
            lock.release()
