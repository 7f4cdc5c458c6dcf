"""The configs a study writes: each trial's, the best trial's (``best.yaml``) and the baseline's (``baseline.yaml``)."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from helper.hpo.keys import set_key
from helper.hpo.space import PRIMITIVES
from helper.hpo.spec import HpoSpec


def _callbacks(cfg: dict[str, Any]) -> list[Any]:
    trainer = cfg.setdefault("trainer", {}) or {}
    cfg["trainer"] = trainer
    callbacks = trainer.get("callbacks") or []
    trainer["callbacks"] = callbacks if isinstance(callbacks, list) else [callbacks]
    return trainer["callbacks"]


def _class_name(callback: Any) -> str:
    class_path = callback.get("class_path", "") if isinstance(callback, dict) else ""
    return str(class_path).rsplit(".", 1)[-1]


def _with_values(spec: HpoSpec, values: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    cfg = copy.deepcopy(spec.base)
    for key, value in [*spec.overrides.items(), *values.items(), *(extra or {}).items()]:
        set_key(cfg, key, value, defaults=spec.resolved)
    return cfg


def trial_config(spec: HpoSpec, number: int, values: dict[str, Any]) -> dict[str, Any]:
    """The complete config of trial ``number``: base + overrides + sampled values, with the trial's bookkeeping.

    The trial gets its seed, its own ``default_root_dir`` (``<runs_dir>/<study>/trial_<n>``), a CSV logger there
    (or none), no progress bar or model summary, no checkpointing or export, and no test-split evaluation.

    Args:
        spec: The HPO spec.
        number: Trial number.
        values: Config values by dotted key.
    """
    cfg = _with_values(spec, values)
    folder = spec.study_dir / f"trial_{number}"
    cfg["seed_everything"] = spec.trial_seed(number)
    cfg["test_after_fit"] = False  # trials are compared on validation only; the test split stays unseen
    trainer = cfg.setdefault("trainer", {}) or {}
    cfg["trainer"] = trainer
    trainer["default_root_dir"] = str(folder)
    trainer["logger"] = (
        {
            "class_path": "pytorch_lightning.loggers.CSVLogger",
            "init_args": {"save_dir": str(spec.study_dir), "name": "", "version": f"trial_{number}"},
        }
        if spec.trial_logger == "csv"
        else False
    )
    trainer["enable_checkpointing"] = False
    trainer["enable_progress_bar"] = False
    trainer["enable_model_summary"] = False
    trainer["callbacks"] = [c for c in _callbacks(cfg) if _class_name(c) not in ("ModelCheckpoint", "HgExport")]
    return cfg


def trial_values(spec: HpoSpec, trial: FrozenTrial) -> dict[str, Any]:
    """Config values of a finished trial by dotted key, in search-space order (categorical JSON decoded)."""
    values = {p.key: p.decode(trial.params[p.key]) for p in spec.params if p.key in trial.params}
    return values | {k: v for k, v in trial.params.items() if k not in values}  # keys of an older search space


def best_config(spec: HpoSpec, trial: FrozenTrial, name: str = "best", export: str | None = None) -> dict[str, Any]:
    """The config to train a trial's values (by default the best trial's) with the script, exporting the student.

    Base + overrides + the trial's values + ``best_overrides``, the trial's seed, ``default_root_dir`` and checkpoints
    under ``<runs_dir>/<study>/<name>``, ``ModelCheckpoint`` monitoring the study's metric and direction, ``HgExport``
    writing to ``export`` (default ``best_export``; both callbacks added when the base has none), and the base
    logger's ``save_dir``/``name`` pointed at that run.

    Args:
        spec: The HPO spec.
        trial: The trial (the best one, or the baseline for a comparison run).
        name: Folder and run name of this training run.
        export: Where the student is exported (default ``spec.best_export``).
    """
    cfg = _with_values(spec, trial_values(spec, trial), spec.best_overrides)
    folder = spec.study_dir / name
    cfg["seed_everything"] = trial.user_attrs.get("seed", spec.trial_seed(trial.number))
    trainer = cfg["trainer"] = cfg.get("trainer") or {}
    trainer["default_root_dir"] = str(folder)
    callbacks = _callbacks(cfg)
    mode = "min" if spec.direction == "minimize" else "max"
    checkpoint = {"dirpath": str(folder / "checkpoints"), "monitor": spec.metric, "mode": mode}
    exported = {"dirpath": export or spec.best_export}
    for callback_name, init_args in (("ModelCheckpoint", checkpoint), ("HgExport", exported)):
        found = [c for c in callbacks if _class_name(c) == callback_name]
        if not found:
            module = "pytorch_lightning.callbacks" if callback_name == "ModelCheckpoint" else "helper.checkpoint"
            found = [{"class_path": f"{module}.{callback_name}", "init_args": {}}]
            callbacks.append(found[0])
        for callback in found:
            callback.setdefault("init_args", {}).update(init_args)
            if callback_name == "ModelCheckpoint":
                callback["init_args"].setdefault("save_top_k", 1)
    logger = trainer.get("logger")
    if isinstance(logger, dict) and isinstance(logger.get("init_args"), dict):
        args = logger["init_args"]
        if "save_dir" in args:
            args["save_dir"] = str(folder)
        if "name" in args:
            args["name"] = f"{spec.study_name}-{name}"
    return cfg


class _ConfigDumper(yaml.SafeDumper):
    """YAML in block style, except lists of scalars (``layers: [0, 5]``)."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = bool(data) and all(isinstance(v, PRIMITIVES) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_ConfigDumper.add_representer(list, _represent_list)


def dump_config(cfg: dict[str, Any], path: Path, header: str = "") -> None:
    """Write a config as YAML, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    text = yaml.dump(cfg, Dumper=_ConfigDumper, sort_keys=False, default_flow_style=False, width=120)
    tmp.write_text(header + text)
    os.replace(tmp, path)


def write_best(spec: HpoSpec, study: optuna.Study, path: Path | None = None) -> Path | None:
    """Write the best trial's config (see :func:`best_config`); None when the study has no completed trial."""
    try:
        trial = study.best_trial
    except ValueError:
        return None
    path = path or spec.output
    lines = [
        f"Best trial of Optuna study {spec.study_name!r} ({spec.storage}), from {spec.path}:",
        f"trial {trial.number}: {spec.metric} = {trial.value:.6g} ({spec.direction}, best over its validations),"
        f" seed {trial.user_attrs.get('seed', spec.trial_seed(trial.number))}",
        "searched values:",
        *(f"  {k}: {v!r}" for k, v in trial_values(spec, trial).items()),
    ]
    if spec.best_overrides:
        lines += ["then best_overrides:", *(f"  {k}: {v!r}" for k, v in spec.best_overrides.items())]
    lines.append(f"train it: python {spec.script}.py --config {path}")
    dump_config(best_config(spec, trial), path, "".join(f"# {line}\n" for line in lines))
    write_baseline(spec, study, path.with_name("baseline.yaml"))
    return path


def write_baseline(spec: HpoSpec, study: optuna.Study, path: Path) -> Path | None:
    """Write the baseline trial's config (the base config's own values, see ``enqueue_base``) for a comparison run.

    It trains like the best config (same overrides, ``best_overrides``, seed and budget) and exports to
    ``<best_export>_baseline``. Nothing is written when the study has no completed baseline trial.
    """
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.user_attrs.get("baseline")]
    if not done:
        return None
    trial = done[0]
    lines = [
        f"Baseline trial of Optuna study {spec.study_name!r} ({spec.storage}): the base config's own values",
        f"trial {trial.number}: {spec.metric} = {trial.value:.6g}; train it to compare with the best config:",
        f"python {spec.script}.py --config {path}",
    ]
    cfg = best_config(spec, trial, name="baseline", export=f"{spec.best_export.rstrip('/')}_baseline")
    dump_config(cfg, path, "".join(f"# {line}\n" for line in lines))
    return path
