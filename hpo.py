"""Optuna hyperparameter search over a training config: ``python hpo.py --config configs/hpo_distillation_ms.yaml``.

An HPO YAML names a normal script config (``base_config``, e.g. ``configs/distillation_ms.yaml``), ``overrides``
applied to every trial (e.g. a data subset), and a ``search_space``. Each trial writes its complete, resolved config
to ``<runs_dir>/<study>/trial_<n>.yaml`` and trains it in-process through :func:`helper.cli.run`; a pruning callback
reports the metric to Optuna after every validation. The study lives in an Optuna storage (SQLite by default), so
running the same command again resumes it. The best trial is written as a config that the script runs directly::

    python hpo.py --config configs/hpo_distillation_ms.yaml [--n-trials 10] [--timeout 3600]
        [--storage sqlite:///runs/hpo/study.db] [--study-name NAME] [--output outputs/hpo/best.yaml] [--check]
    python distillation_ms.py --config outputs/hpo/<study>/best.yaml

HPO YAML keys (only ``base_config`` and ``search_space`` are required)::

    base_config: configs/distillation_ms.yaml   # from the working directory, else this file's folder, else the repo
    script: distillation_ms        # default: from the base config's file name (distillation_ms*, finetune*, ...)
    study_name: my_study           # default: the HPO YAML's file stem
    storage: sqlite:///runs/hpo/my_study.db     # default; any SQLAlchemy URL Optuna accepts
    n_trials: 10                   # target number of finished (complete + pruned) trials in the study
    timeout: null                  # seconds; no new trial starts after that
    metric: val_acc                # val_loss, val_acc, val_f1, val_f1_<label>, val_distill_loss (distillation)
    direction: maximize            # default: minimize for *loss* metrics, else maximize
    seed: 42                       # default: the base config's seed_everything
    seed_mode: fixed               # fixed: every trial seeds with `seed`; per_trial: seed + trial number
    enqueue_base: true             # a new study's first trial uses the base config's own values (a baseline)
    sampler: {type: tpe, n_startup_trials: 4}   # tpe | random; other keys go to the Optuna sampler
    pruner: {type: median, n_startup_trials: 3} # median | percentile | hyperband | successive_halving | none
    runs_dir: runs/hpo             # trial configs and CSV logs under <runs_dir>/<study>/
    trial_logger: csv              # csv (metrics.csv per trial) | none
    output: outputs/hpo/<study>/best.yaml       # the best trial's config
    best_export: outputs/student_hpo            # where that config's HgExport writes the student
    overrides:                     # dotted keys, value replaces; applied to every trial and to the best config
      data.max_train_samples: 2000
    best_overrides: {}             # applied to the best config only (e.g. full data for the final run)
    search_space:                  # dotted keys of the resolved base config
      model.alpha: {type: float, low: 0.0, high: 1.0}
      model.lr: {type: float, low: 1.0e-5, high: 3.0e-4, log: true}
      trainer.max_epochs: {type: int, low: 1, high: 3}            # int: optional step (not with log)
      model.adaptors.AttnMiniLM.weight: {type: float, low: 0.0, high: 2.0}   # an adaptor's option, by name
      model.student.layers: {type: categorical, choices: [[0, 5], [0, 2, 5]]}

Keys address nested mappings with dots; inside a list an element is chosen by index, by its ``name`` (adaptors,
whatever form ``model.adaptors`` is written in) or by the last part of its ``class_path``
(``trainer.callbacks.ModelCheckpoint.init_args.monitor``). A key must exist in the base config as the script's CLI
resolves it, so keys left at their defaults (``trainer.gradient_clip_val``) count; an adaptor's key may be any
option that adaptor accepts (``model.adaptors.LogitKD.temperature``). Every problem of the HPO YAML (ranges, types,
keys, metric, values that the script's CLI refuses, ...) is reported at once, before any trial.

Choices made here:

* ``--n-trials`` is the *total* target: the command runs trials until the study holds that many finished (complete
  or pruned) trials, so re-running after an interruption finishes the study, and a larger value adds trials. Trial
  numbers continue across runs. A trial interrupted with Ctrl-C is marked failed and not counted; one whose process
  was killed is marked failed by Optuna's heartbeat (RDB storages) after a grace period and is not counted either.
* Seeds: ``seed_mode: fixed`` (default) gives every trial the same seed, so trials differ only by their
  hyperparameters (same data order and initialisation) and the best config, which keeps that seed, reproduces the
  best trial. The sampler is seeded with ``seed`` plus the number of trials already in the study (reproducible
  sequences, and a resumed study does not re-propose the first trials' points).
* ``enqueue_base`` (default true): a new study's first trial runs the base config's own values of the searched
  keys (``study.enqueue_trial``), so the study measures the starting config under the same budget and seed, and its
  best trial is never worse than that baseline on the trial metric. A base value outside its search range is left
  to the sampler (named in the output).
* The trial value is the best value of the metric over the trial's validations (per the direction). The best config
  points its ``ModelCheckpoint`` at the same metric and direction, so the exported student is the checkpoint chosen
  by the same criterion. Pruning reports at validation ``i`` (0, 1, ...) of each trial.
* Trials keep no checkpoints and export nothing (``ModelCheckpoint`` and ``HgExport`` are removed,
  ``enable_checkpointing: false``); their logs go to ``<runs_dir>/<study>/trial_<n>/`` (CSV), never to wandb.
* A trial that raises an error is marked failed and stops the command with that error (fix, then re-run); a trial
  whose metric is NaN is marked failed and the study goes on.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import difflib
import gc
import inspect
import io
import json
import logging
import math
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pytorch_lightning as pl
import yaml
from optuna.trial import FrozenTrial, TrialState

from adaptors import ADAPTORS, accepted_options
from adaptors.registry import normalise_spec as normalise_adaptors
from helper.cli import REPO_ROOT, run
from helper.distiller import BaseDistiller, InterDistiller, PredDistiller
from helper.finetuner import ClfFinetune

#: Script name -> (LightningModule, the model argument the tokenizer follows). Matched as a prefix of the base
#: config's file name, longest first (the convention of ``tests/test_configs.py``).
SCRIPTS: dict[str, tuple[type[pl.LightningModule], str]] = {
    "distillation_ms": (BaseDistiller, "model.teacher"),
    "distillation_ts_1st": (InterDistiller, "model.teacher"),
    "distillation_ts_2nd": (PredDistiller, "model.teacher"),
    "finetune": (ClfFinetune, "model.model"),
}
SAMPLERS: dict[str, type[optuna.samplers.BaseSampler]] = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
}
PRUNERS: dict[str, type[optuna.pruners.BasePruner]] = {
    "median": optuna.pruners.MedianPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "none": optuna.pruners.NopPruner,
}
HPO_KEYS = (
    "base_config",
    "script",
    "study_name",
    "storage",
    "n_trials",
    "timeout",
    "metric",
    "direction",
    "seed",
    "seed_mode",
    "enqueue_base",
    "sampler",
    "pruner",
    "runs_dir",
    "trial_logger",
    "output",
    "best_export",
    "overrides",
    "best_overrides",
    "search_space",
)
PARAM_TYPES = ("float", "int", "categorical")
#: Keys that every trial sets itself; searching them would be overwritten or break the bookkeeping.
RESERVED_SEARCH_KEYS = ("seed_everything", "trainer.logger", "trainer.default_root_dir", "trainer.enable_checkpointing")
ADAPTORS_KEY = "model.adaptors"
HEARTBEAT_S = 60  # RDB storages: a trial without a heartbeat for 2 intervals is marked failed
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class HpoConfigError(ValueError):
    """An invalid HPO configuration; ``problems`` lists every problem found.

    Args:
        problems: One message per problem.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid HPO configuration ({len(self.problems)} problem(s)):\n{lines}")


class KeyPathError(KeyError):
    """A dotted key that does not address a value of a config."""

    def __str__(self) -> str:
        return str(self.args[0])


# ---------------------------------------------------------------------------------------------- dotted keys
def _is_adaptor_entry(path: str) -> bool:
    return path.startswith(ADAPTORS_KEY + ".") and path.count(".") == 2


def canonical_adaptors(spec: Any) -> list[dict[str, Any]]:
    """Rewrite any adaptor specification form as a list of ``{"name": ..., **options}`` dicts (same order).

    Args:
        spec: ``model.adaptors`` as a config holds it: names, pairs, dicts, or a ``{name: weight_or_options}`` map.

    Raises:
        KeyPathError: The specification cannot be read.
    """
    errors: list[str] = []
    entries = normalise_adaptors(spec, errors)
    if errors:
        raise KeyPathError(f"{ADAPTORS_KEY}: {'; '.join(errors)}")
    return [{"name": e.name, **e.options} for e in entries]


def _list_index(items: list, seg: str) -> int | None:
    """Index of ``seg`` in a config list: an integer, an element's ``name``, or its ``class_path``'s last part."""
    if re.fullmatch(r"-?\d+", seg):
        idx = int(seg)
        return idx % len(items) if -len(items) <= idx < len(items) else None
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        class_path = item.get("class_path")
        if item.get("name") == seg or (isinstance(class_path, str) and class_path.rsplit(".", 1)[-1] == seg):
            return i
    return None


def _describe_list(items: list) -> str:
    names = []
    for i, item in enumerate(items):
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            names.append(item["name"])
        elif isinstance(item, dict) and isinstance(item.get("class_path"), str):
            names.append(item["class_path"].rsplit(".", 1)[-1])
        else:
            names.append(str(i))
    return ", ".join(names) or "(empty)"


def locate(
    cfg: dict[str, Any], key: str, create: bool = False, defaults: dict[str, Any] | None = None
) -> tuple[dict | list, str | int]:
    """Find the container and index that a dotted key addresses in a config.

    ``model.adaptors`` is rewritten in place to its canonical list form (see :func:`canonical_adaptors`) when the key
    goes inside it, so that an adaptor is addressed by name whatever form the YAML used.

    Args:
        cfg: The config (modified only by the adaptor rewrite, and by ``create``).
        key: Dotted key, e.g. ``model.adaptors.AttnMiniLM.weight``.
        create: Fill in missing keys on the way and accept a missing last key (for setting a value).
        defaults: With ``create``, the resolved config that a missing key is copied from (e.g. ``model.adaptors``
            left at its default in the YAML); a key missing there too becomes an empty mapping.

    Returns:
        ``(container, index)`` with ``container[index]`` the addressed value (possibly not there yet with ``create``).

    Raises:
        KeyPathError: The key does not address a value (with the available keys or names).
    """
    parts = key.split(".")
    if not all(parts):
        raise KeyPathError(f"{key}: empty part in the dotted key")
    node: Any = cfg
    for depth, seg in enumerate(parts):
        path, last = ".".join(parts[:depth]), depth == len(parts) - 1
        here = f"{path!r}" if path else "the config"
        if isinstance(node, dict):
            if _is_adaptor_entry(path) and last:
                name = node.get("name")
                options = sorted(accepted_options(ADAPTORS[name])) if name in ADAPTORS else []
                if seg not in options:
                    raise KeyPathError(f"{key}: adaptor {name} has no option {seg!r}; accepted: {', '.join(options)}")
                return node, seg
            if seg not in node:
                if not create:
                    close = difflib.get_close_matches(seg, [str(k) for k in node], n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    raise KeyPathError(
                        f"{key}: {here} has no key {seg!r}{hint}; keys: {', '.join(map(str, node)) or '(none)'}"
                    )
                if last:
                    return node, seg
                node[seg] = _default_at(defaults, ".".join(parts[: depth + 1]))
            if last:
                return node, seg
            if path == "model" and seg == "adaptors":
                node[seg] = canonical_adaptors(node[seg])
            node = node[seg]
        elif isinstance(node, list):
            idx = _list_index(node, seg)
            if idx is None:
                what = "adaptor" if path == ADAPTORS_KEY else "element"
                raise KeyPathError(f"{key}: no {what} {seg!r} in {here}; it has: {_describe_list(node)}")
            if last:
                return node, idx
            node = node[idx]
        else:
            raise KeyPathError(f"{key}: {here} is {node!r}, not a mapping or a list")
    raise AssertionError("unreachable")


def _default_at(defaults: dict[str, Any] | None, key: str) -> Any:
    """A copy of the value at ``key`` in ``defaults``, else an empty mapping."""
    try:
        return copy.deepcopy(get_key(copy.deepcopy(defaults), key)) if defaults else {}
    except KeyPathError:
        return {}


def get_key(cfg: dict[str, Any], key: str) -> Any:
    """The value a dotted key addresses (see :func:`locate`); an adaptor option not written gives its default."""
    container, index = locate(cfg, key)
    if isinstance(container, dict) and index not in container:  # an adaptor option left at its default
        return ADAPTORS[container["name"]].option_defaults().get(index)
    return container[index]


def set_key(cfg: dict[str, Any], key: str, value: Any, defaults: dict[str, Any] | None = None) -> None:
    """Set the value a dotted key addresses (see :func:`locate`), filling in missing keys from ``defaults``."""
    container, index = locate(cfg, key, create=True, defaults=defaults)
    container[index] = copy.deepcopy(value)


# ---------------------------------------------------------------------------------------------- the HPO spec
PRIMITIVES = (type(None), bool, int, float, str)


@dataclass
class Param:
    """One searched key.

    Args:
        key: Dotted key of the training config.
        type: ``float``, ``int`` or ``categorical``.
        low: Lower bound (numeric types).
        high: Upper bound (numeric types, inclusive).
        log: Sample on a log scale.
        step: Discretisation step (not with ``log``).
        choices: Categorical values; any YAML values (lists and mappings are stored in Optuna as JSON text).
    """

    key: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: list[Any] = field(default_factory=list)

    @property
    def encoded(self) -> bool:
        """Whether the categorical choices go through Optuna as JSON text (some are not plain scalars)."""
        return self.type == "categorical" and not all(isinstance(c, PRIMITIVES) for c in self.choices)

    def suggest(self, trial: optuna.Trial) -> Any:
        """Sample this parameter in ``trial`` and return the config value."""
        if self.type == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return trial.suggest_int(self.key, self.low, self.high, log=self.log, step=self.step or 1)
        if self.encoded:
            return json.loads(trial.suggest_categorical(self.key, [json.dumps(c) for c in self.choices]))
        return trial.suggest_categorical(self.key, self.choices)

    def decode(self, value: Any) -> Any:
        """The config value for a value stored in Optuna."""
        return json.loads(value) if self.encoded else value

    def contains(self, value: Any) -> bool:
        """Whether ``value`` lies in this parameter's range (or is one of its choices)."""
        if self.type == "categorical":
            return value in self.choices
        if not _is_number(value) or (self.type == "int" and not isinstance(value, int)):
            return False
        return self.low <= value <= self.high

    def encode(self, value: Any) -> Any:
        """The value as stored in Optuna (inverse of :meth:`decode`)."""
        return json.dumps(value) if self.encoded else value

    def corners(self) -> list[Any]:
        """Values that must all be valid for the script: the bounds, or every choice."""
        return list(self.choices) if self.type == "categorical" else [self.low, self.high]

    def describe(self) -> str:
        """A short human-readable form."""
        if self.type == "categorical":
            return f"{self.key}: one of {self.choices}"
        scale = ", log" if self.log else (f", step {self.step}" if self.step else "")
        return f"{self.key}: {self.type} in [{self.low}, {self.high}]{scale}"

    def as_dict(self) -> dict[str, Any]:
        """The YAML form (as stored with the study)."""
        if self.type == "categorical":
            return {"type": self.type, "choices": self.choices}
        out: dict[str, Any] = {"type": self.type, "low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


@dataclass
class HpoSpec:
    """A validated HPO configuration (see the module docstring for the YAML keys)."""

    path: Path
    base_config: Path
    script: str
    study_name: str
    storage: str
    n_trials: int
    timeout: float | None
    metric: str
    direction: str
    seed: int
    seed_mode: str
    enqueue_base: bool
    sampler: dict[str, Any]
    pruner: dict[str, Any]
    runs_dir: Path
    trial_logger: str
    output: Path
    best_export: str
    overrides: dict[str, Any]
    best_overrides: dict[str, Any]
    params: list[Param]
    base: dict[str, Any]  # the base YAML as written
    resolved: dict[str, Any]  # base + overrides as the script's CLI resolves them (defaults filled in)

    @property
    def module(self) -> tuple[type[pl.LightningModule], str]:
        """The script's LightningModule and tokenizer link."""
        return SCRIPTS[self.script]

    @property
    def study_dir(self) -> Path:
        """Folder of the trials' configs and logs."""
        return self.runs_dir / self.study_name

    def trial_seed(self, number: int) -> int:
        """``seed_everything`` of trial ``number``."""
        return self.seed + number if self.seed_mode == "per_trial" else self.seed


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_param(key: str, raw: Any) -> tuple[Param | None, list[str]]:
    """Read one ``search_space`` entry.

    Args:
        key: The dotted key.
        raw: Its YAML value.

    Returns:
        The parameter (None when unusable) and the problems found.
    """
    where = f"search_space.{key}"
    if not isinstance(raw, dict):
        return None, [f"{where}: expected a mapping such as {{type: float, low: 0.0, high: 1.0}}, got {raw!r}"]
    kind = raw.get("type")
    if kind not in PARAM_TYPES:
        shown = "missing" if kind is None else repr(kind)
        return None, [f"{where}: unknown type {shown}; expected one of {', '.join(PARAM_TYPES)}"]
    problems: list[str] = []
    allowed = {"type", "choices"} if kind == "categorical" else {"type", "low", "high", "log", "step"}
    extra = sorted(set(raw) - allowed)
    if extra:
        problems.append(f"{where}: unknown field(s) {extra} for type {kind}; expected {sorted(allowed)}")
    if kind == "categorical":
        choices = raw.get("choices")
        if not isinstance(choices, list) or not choices:
            problems.append(f"{where}: categorical needs a non-empty list of choices, got {choices!r}")
            return None, problems
        if len({json.dumps(c, sort_keys=True, default=str) for c in choices}) != len(choices):
            problems.append(f"{where}: duplicate choices in {choices}")
        return Param(key, kind, choices=choices), problems
    low, high, log, step = raw.get("low"), raw.get("high"), raw.get("log", False), raw.get("step")
    number_check = (lambda v: isinstance(v, int) and not isinstance(v, bool)) if kind == "int" else _is_number
    for name, value in (("low", low), ("high", high)):
        if not number_check(value):
            problems.append(f"{where}: {name} must be {'an integer' if kind == 'int' else 'a number'}, got {value!r}")
    if not isinstance(log, bool):
        problems.append(f"{where}: log must be true or false, got {log!r}")
    if step is not None and (not number_check(step) or step <= 0):
        problems.append(f"{where}: step must be a positive {'integer' if kind == 'int' else 'number'}, got {step!r}")
    if problems:
        return None, problems
    if low >= high:
        problems.append(f"{where}: empty range, low={low} must be < high={high}")
    if log and low <= 0:
        problems.append(f"{where}: log scale needs low > 0, got low={low}")
    if log and step is not None:
        problems.append(f"{where}: step cannot be combined with log")
    return Param(key, kind, low=low, high=high, log=log, step=step), problems


def _script_for(base_config: Path) -> str | None:
    for name in sorted(SCRIPTS, key=len, reverse=True):
        if base_config.stem.startswith(name):
            return name
    return None


def _known_metrics(script: str, resolved: dict[str, Any] | None) -> list[str]:
    metrics = ["val_loss", "val_acc", "val_f1"]
    if script.startswith("distillation"):
        metrics.append("val_distill_loss")
    labels = ((resolved or {}).get("data") or {}).get("label_names") or []
    metrics += [f"val_f1_{str(n).replace(' ', '_')}" for n in labels]
    return metrics


def _build_component(kind: str, raw: Any, registry: dict[str, type], default: str) -> tuple[dict, list[str]]:
    """Read ``sampler:`` / ``pruner:`` (a type name, or a mapping with ``type`` and keyword arguments)."""
    if raw is None:
        raw = {"type": default}
    if isinstance(raw, str):
        raw = {"type": raw}
    if not isinstance(raw, dict):
        return {}, [f"{kind}: expected a type name or a mapping with 'type', got {raw!r}"]
    raw = dict(raw)
    name = raw.pop("type", default)
    if name not in registry:
        return {}, [f"{kind}: unknown type {name!r}; expected one of {', '.join(registry)}"]
    accepted = set(inspect.signature(registry[name]).parameters)
    bad = sorted(set(raw) - accepted)
    if bad:
        return {}, [f"{kind}: {name} takes no argument(s) {bad}; accepted: {', '.join(sorted(accepted))}"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            registry[name](**raw)
    except (TypeError, ValueError) as exc:
        return {}, [f"{kind}: {name}({raw}) is invalid: {exc}"]
    return {"type": name, **raw}, []


def _resolve_path(value: str, hpo_path: Path) -> Path:
    """A relative path from the working directory, else from the HPO YAML's folder, else from the repository."""
    path = Path(value)
    if path.is_absolute() or path.exists():
        return path
    for root in (hpo_path.parent, REPO_ROOT):
        if (root / path).exists():
            return root / path
    return path


def cli_check(spec_script: str, cfg: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """Parse a config with the script's CLI (``--print_config``, nothing is built).

    Args:
        spec_script: Script name (key of :data:`SCRIPTS`).
        cfg: The config.

    Returns:
        ``(resolved config, None)`` when it parses, else ``(None, the parser's error message)``.
    """
    module, tokenizer_from = SCRIPTS[spec_script]
    out, err = io.StringIO(), io.StringIO()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                run(module, f"{spec_script}.yaml", tokenizer_from, args=["--config", str(path), "--print_config"])
        except SystemExit as done:
            if done.code not in (0, None):
                text = err.getvalue()
                message = text.rsplit("error:", 1)[-1] if "error:" in text else text[-500:]
                return None, " ".join(message.split()) or f"the parser exited with code {done.code}"
        except Exception as exc:  # any failure of the parser is a config problem to report
            return None, f"{type(exc).__name__}: {exc}"
    return yaml.safe_load(out.getvalue()) or {}, None


def _check_keys(keys: Sequence[str], resolved: dict[str, Any], section: str) -> list[str]:
    problems = []
    for key in keys:
        try:
            locate(copy.deepcopy(resolved), key)
        except KeyPathError as exc:
            problems.append(f"{section}.{exc}")
    return problems


def _mapping(raw: dict[str, Any], name: str, problems: list[str]) -> dict[str, Any]:
    value = raw.get(name) or {}
    if not isinstance(value, dict):
        problems.append(f"{name}: expected a mapping of dotted keys to values, got {value!r}")
        return {}
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        problems.append(f"{name}: keys must be dotted strings, got {bad}")
    return {str(k): v for k, v in value.items()}


def _read_base(raw: dict[str, Any], hpo_path: Path, problems: list[str]) -> tuple[dict[str, Any], Path, str | None]:
    """The base config as written, its path, and the script it belongs to."""
    base: dict[str, Any] = {}
    base_path = Path()
    script = raw.get("script")
    if not raw.get("base_config"):
        problems.append("base_config: required (the script config to tune, e.g. configs/distillation_ms.yaml)")
    else:
        base_path = _resolve_path(str(raw["base_config"]), hpo_path)
        if not base_path.is_file():
            problems.append(f"base_config: {str(raw['base_config'])!r} not found")
        else:
            loaded = yaml.safe_load(base_path.read_text()) or {}
            if isinstance(loaded, dict):
                base = loaded
            else:
                problems.append(f"base_config: {base_path} does not hold a mapping")
        if script is None:
            script = _script_for(base_path)
            if script is None:
                problems.append(
                    f"script: cannot tell the script from {base_path.name!r}; set it to one of {', '.join(SCRIPTS)}"
                )
    if script is not None and script not in SCRIPTS:
        problems.append(f"script: unknown {script!r}; expected one of {', '.join(SCRIPTS)}")
        script = None
    return base, base_path, script


def _read_search_space(raw: dict[str, Any], overrides: dict[str, Any], problems: list[str]) -> list[Param]:
    """The parameters of ``search_space`` (those without problems)."""
    space = raw.get("search_space")
    if not isinstance(space, dict) or not space:
        problems.append("search_space: required, a non-empty mapping of dotted keys to {type: ..., ...}")
        return []
    params = []
    for key, value in space.items():
        key = str(key)
        param, found = parse_param(key, value)
        problems += found
        if any(key == r or key.startswith(r + ".") for r in RESERVED_SEARCH_KEYS):
            problems.append(f"search_space.{key}: set by hpo.py for every trial; it cannot be searched")
            param = None
        if key in overrides:
            problems.append(f"search_space.{key}: also given in overrides; a key is either fixed or searched")
        if param is not None and not found:
            params.append(param)
    return params


def _check_with_cli(
    script: str,
    base: dict[str, Any],
    base_path: Path,
    sections: dict[str, dict[str, Any]],
    params: list[Param],
    problems: list[str],
) -> dict[str, Any] | None:
    """Check the keys and values against the script's CLI; return the resolved base + overrides (None if unusable).

    Keys must address values of the resolved config (where keys left at their defaults appear too, e.g.
    ``trainer.gradient_clip_val``); the base with the overrides, and with each parameter at each of its bounds or
    choices, must parse.
    """
    resolved, error = cli_check(script, base)
    if error:
        problems.append(f"base_config: {base_path} does not parse with {script}.py: {error}")
        return None
    broken = _check_keys(list(sections["overrides"]), resolved, "overrides")
    problems += broken
    with_overrides = copy.deepcopy(base)
    if not broken:
        for key, value in sections["overrides"].items():
            set_key(with_overrides, key, value, defaults=resolved)
        checked, error = cli_check(script, with_overrides)
        if error:
            problems.append(f"overrides: the base config with the overrides does not parse: {error}")
            broken.append(error)  # the values below cannot be checked on a broken base
        resolved = checked or resolved
    problems += _check_keys(list(sections["best_overrides"]), resolved, "best_overrides")
    for param in params:
        key_problems = _check_keys([param.key], resolved, "search_space")
        problems += key_problems
        if key_problems or broken:
            continue
        for value in param.corners():
            cfg = copy.deepcopy(with_overrides)
            set_key(cfg, param.key, value, defaults=resolved)
            _, error = cli_check(script, cfg)
            if error:
                problems.append(f"search_space.{param.key}: value {value!r} does not parse: {error}")
                break
    return resolved


def _check_metric(raw: dict[str, Any], script: str | None, resolved: dict | None, problems: list[str]) -> tuple:
    """The metric and its direction."""
    metric = raw.get("metric", "val_acc")
    known = _known_metrics(script or "distillation", resolved)
    labels_unknown = not ((resolved or {}).get("data") or {}).get("label_names")
    if not isinstance(metric, str) or (metric not in known and not (labels_unknown and metric.startswith("val_f1_"))):
        problems.append(f"metric: unknown metric {metric!r}; expected one of {', '.join(known)}")
    direction = raw.get("direction") or ("minimize" if "loss" in str(metric) else "maximize")
    if direction not in ("minimize", "maximize"):
        problems.append(f"direction: expected minimize or maximize, got {direction!r}")
    return metric, direction


def load_spec(path: str | Path, **cli: Any) -> HpoSpec:
    """Read and validate an HPO YAML; every problem is collected and raised together.

    Args:
        path: The HPO YAML.
        **cli: Command-line values that replace the YAML's (``n_trials``, ``storage``, ``study_name``, ``timeout``,
            ``output``); None means not given.

    Returns:
        The validated spec.

    Raises:
        HpoConfigError: Listing every problem found.
    """
    path = Path(path)
    if not path.is_file():
        raise HpoConfigError([f"{path}: HPO config file not found"])
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise HpoConfigError([f"{path}: not valid YAML: {exc}"]) from exc
    if not isinstance(raw, dict):
        raise HpoConfigError([f"{path}: expected a mapping at the top level"])
    raw.update({k: v for k, v in cli.items() if v is not None})
    problems: list[str] = []
    for key in sorted(set(raw) - set(HPO_KEYS)):
        close = difflib.get_close_matches(key, HPO_KEYS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(f"{key}: unknown HPO key{hint}; expected keys among {', '.join(HPO_KEYS)}")

    base, base_path, script = _read_base(raw, path, problems)
    sections = {name: _mapping(raw, name, problems) for name in ("overrides", "best_overrides")}
    params = _read_search_space(raw, sections["overrides"], problems)
    resolved = _check_with_cli(script, base, base_path, sections, params, problems) if base and script else None
    metric, direction = _check_metric(raw, script, resolved, problems)

    n_trials = raw.get("n_trials", 10)
    if not isinstance(n_trials, int) or isinstance(n_trials, bool) or n_trials < 1:
        problems.append(f"n_trials: expected a positive integer, got {n_trials!r}")
    timeout = raw.get("timeout")
    if timeout is not None and (not _is_number(timeout) or timeout <= 0):
        problems.append(f"timeout: expected a positive number of seconds, got {timeout!r}")
    seed = raw.get("seed", (resolved or base).get("seed_everything", 42))
    if not isinstance(seed, int) or isinstance(seed, bool):
        problems.append(f"seed: expected an integer (the base seed_everything is {seed!r}); set seed: explicitly")
    seed_mode = raw.get("seed_mode", "fixed")
    if seed_mode not in ("fixed", "per_trial"):
        problems.append(f"seed_mode: expected fixed or per_trial, got {seed_mode!r}")
    enqueue_base = raw.get("enqueue_base", True)
    if not isinstance(enqueue_base, bool):
        problems.append(f"enqueue_base: expected true or false, got {enqueue_base!r}")
    sampler, found = _build_component("sampler", raw.get("sampler"), SAMPLERS, "tpe")
    problems += found
    pruner, found = _build_component("pruner", raw.get("pruner"), PRUNERS, "median")
    problems += found
    trial_logger = raw.get("trial_logger", "csv")
    if trial_logger not in ("csv", "none"):
        problems.append(f"trial_logger: expected csv or none, got {trial_logger!r}")
    study_name = str(raw.get("study_name") or path.stem)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", study_name):
        problems.append(f"study_name: {study_name!r} must use letters, digits, '_', '.', '-' only")
    runs_dir = Path(str(raw.get("runs_dir", "runs/hpo")))
    storage = str(raw.get("storage") or f"sqlite:///{runs_dir / study_name}.db")
    if "://" not in storage:
        problems.append(f"storage: {storage!r} is not a database URL (e.g. sqlite:///runs/hpo/study.db)")
    if problems:
        raise HpoConfigError(problems)
    return HpoSpec(
        path=path,
        base_config=base_path,
        script=script,
        study_name=study_name,
        storage=storage,
        n_trials=n_trials,
        timeout=float(timeout) if timeout is not None else None,
        metric=metric,
        direction=direction,
        seed=seed,
        seed_mode=seed_mode,
        enqueue_base=enqueue_base,
        sampler=sampler,
        pruner=pruner,
        runs_dir=runs_dir,
        trial_logger=trial_logger,
        output=Path(str(raw.get("output") or Path("outputs") / "hpo" / study_name / "best.yaml")),
        best_export=str(raw.get("best_export") or "outputs/student_hpo"),
        overrides=sections["overrides"],
        best_overrides=sections["best_overrides"],
        params=params,
        base=base,
        resolved=resolved,
    )


# ---------------------------------------------------------------------------------------------- configs
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
    (or none), no progress bar or model summary, and no checkpointing or export.

    Args:
        spec: The HPO spec.
        number: Trial number.
        values: Config values by dotted key.
    """
    cfg = _with_values(spec, values)
    folder = spec.study_dir / f"trial_{number}"
    cfg["seed_everything"] = spec.trial_seed(number)
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


def _dump(cfg: dict[str, Any], path: Path, header: str = "") -> None:
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
    _dump(best_config(spec, trial), path, "".join(f"# {line}\n" for line in lines))
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
    _dump(cfg, path, "".join(f"# {line}\n" for line in lines))
    return path


# ---------------------------------------------------------------------------------------------- trials
class OptunaPruning(pl.Callback):
    """Reports a logged metric to an Optuna trial after every validation and stops the fit when it should be pruned.

    Written for the ``pytorch_lightning`` namespace (optuna-integration's callback needs the ``lightning`` package).
    The sanity check is skipped; report ``i`` is the ``i``-th validation of the fit. After a prune the trainer stops
    (``should_stop``) and :attr:`pruned` is set: the caller raises :class:`optuna.TrialPruned` once ``fit`` returns.

    Args:
        trial: The running trial.
        monitor: Metric name in ``trainer.callback_metrics``.
        direction: ``minimize`` or ``maximize``, for :attr:`best`.
    """

    def __init__(self, trial: optuna.Trial, monitor: str, direction: str = "maximize") -> None:
        self.trial = trial
        self.monitor = monitor
        self.direction = direction
        self.values: list[float] = []
        self.pruned: str | None = None

    @property
    def best(self) -> float | None:
        """Best reported value (NaN only if every value was NaN); None before the first validation."""
        finite = [v for v in self.values if not math.isnan(v)]
        if not finite:
            return self.values[-1] if self.values else None
        return min(finite) if self.direction == "minimize" else max(finite)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Report the metric; mark the trial pruned and stop training when the pruner says so."""
        if trainer.sanity_checking:
            return
        if self.monitor not in trainer.callback_metrics:
            logged = ", ".join(sorted(trainer.callback_metrics)) or "nothing"
            raise KeyError(f"metric {self.monitor!r} was not logged at validation; logged: {logged}")
        value = float(trainer.callback_metrics[self.monitor])
        step = len(self.values)
        self.values.append(value)
        self.trial.report(value, step)
        if self.trial.should_prune():
            self.pruned = f"pruned at validation {step} with {self.monitor}={value:.6g}"
            trainer.should_stop = True


def make_objective(spec: HpoSpec) -> Any:
    """The Optuna objective: sample, write ``trial_<n>.yaml``, train in-process, return the best metric value."""
    module, tokenizer_from = spec.module

    def objective(trial: optuna.Trial) -> float:
        values = {p.key: p.suggest(trial) for p in spec.params}
        config_path = spec.study_dir / f"trial_{trial.number}.yaml"
        seed = spec.trial_seed(trial.number)
        trial.set_user_attr("seed", seed)
        trial.set_user_attr("config", str(config_path))
        _dump(trial_config(spec, trial.number, values), config_path)
        pruning = OptunaPruning(trial, spec.metric, spec.direction)
        try:
            cli = run(module, f"{spec.script}.yaml", tokenizer_from, ["--config", str(config_path)], [pruning])
        except SystemExit as exc:  # Lightning turns Ctrl-C into sys.exit(1); Optuna must see the interrupt
            if isinstance(exc.__context__, KeyboardInterrupt):
                raise KeyboardInterrupt from exc
            raise RuntimeError(f"trial {trial.number}: {spec.script} exited with code {exc.code}") from exc
        del cli
        gc.collect()
        if pruning.pruned:
            raise optuna.TrialPruned(pruning.pruned)
        if pruning.best is None:
            raise RuntimeError(f"trial {trial.number}: no validation ran, so {spec.metric} was never reported")
        return pruning.best

    return objective


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def progress_line(spec: HpoSpec, study: optuna.Study, trial: FrozenTrial) -> str:
    """One line per finished trial: number, state, value, params, best so far."""
    value = "-" if trial.value is None else _fmt(trial.value)
    took = trial.duration.total_seconds() if trial.duration else 0.0
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in trial_values(spec, trial).items())
    try:
        best = study.best_trial
        best_text = f"best: trial {best.number} {spec.metric}={_fmt(best.value)}"
    except ValueError:
        best_text = "best: none yet"
    tag = " (baseline: the base config's values)" if trial.user_attrs.get("baseline") else ""
    state = f"[hpo] trial {trial.number}{tag} {trial.state.name} {spec.metric}={value} ({took:.1f} s)"
    return f"{state} | {params} | {best_text}"


def open_study(spec: HpoSpec) -> optuna.Study:
    """Create the study or load it (same name and storage), checking the metric and direction match."""
    if spec.storage.startswith("sqlite:///") and ":memory:" not in spec.storage:
        Path(spec.storage[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            storage = optuna.storages.RDBStorage(
                spec.storage, heartbeat_interval=HEARTBEAT_S, grace_period=2 * HEARTBEAT_S
            )
        except Exception as exc:  # SQLAlchemy: bad URL, missing driver, unreachable server
            raise HpoConfigError([f"storage: cannot open {spec.storage!r}: {type(exc).__name__}: {exc}"]) from exc
        study = optuna.create_study(
            storage=storage, study_name=spec.study_name, direction=spec.direction, load_if_exists=True
        )
        optuna.storages.fail_stale_trials(study)
    attrs = study.user_attrs
    if not study.trials and spec.enqueue_base:
        enqueue_baseline(spec, study)
    if not attrs:
        study.set_user_attr("metric", spec.metric)
        study.set_user_attr("script", spec.script)
        study.set_user_attr("search_space", {p.key: p.as_dict() for p in spec.params})
    else:
        stored_direction = study.direction.name.lower()
        if attrs.get("metric") != spec.metric or stored_direction != spec.direction:
            raise HpoConfigError(
                [
                    f"study {spec.study_name!r} in {spec.storage} optimises {attrs.get('metric')} "
                    f"({stored_direction}), not {spec.metric} ({spec.direction}); use another study_name or storage"
                ]
            )
        if attrs.get("search_space") != {p.key: p.as_dict() for p in spec.params}:
            print(f"[hpo] warning: the search space differs from the one study {spec.study_name!r} started with")
    sampler_kwargs = dict(spec.sampler)
    kind = sampler_kwargs.pop("type")
    base_seed = sampler_kwargs.pop("seed", None)
    base_seed = spec.seed if base_seed is None else base_seed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.sampler = SAMPLERS[kind](seed=base_seed + len(study.trials), **sampler_kwargs)
        pruner_kwargs = dict(spec.pruner)
        study.pruner = PRUNERS[pruner_kwargs.pop("type")](**pruner_kwargs)
    return study


def enqueue_baseline(spec: HpoSpec, study: optuna.Study) -> None:
    """Queue the base config's own values of the searched keys as the study's first trial."""
    fixed, outside = {}, []
    for param in spec.params:
        try:
            value = get_key(spec.resolved, param.key)
        except (KeyError, IndexError, TypeError, ValueError):  # a key the base config does not hold
            value = None
        if param.contains(value):
            fixed[param.key] = param.encode(value)
        else:
            outside.append(f"{param.key}={value!r}")
    if outside:
        print(f"[hpo] baseline trial: {', '.join(outside)} outside the search space; the sampler picks those")
    if fixed:
        study.enqueue_trial(fixed, user_attrs={"baseline": True}, skip_if_exists=True)


def finished_count(study: optuna.Study) -> int:
    """Trials that count towards ``n_trials``: complete or pruned."""
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def optimize(spec: HpoSpec, study: optuna.Study) -> None:
    """Run trials until ``study`` holds ``spec.n_trials`` finished trials (or the timeout), printing progress.

    Args:
        spec: The HPO spec.
        study: The study (see :func:`open_study`).

    Raises:
        KeyboardInterrupt: When interrupted (the running trial is marked failed first).
    """
    done = finished_count(study)
    todo = spec.n_trials - done
    print(
        f"[hpo] study {spec.study_name!r} ({spec.storage}): {done} finished trial(s), target {spec.n_trials}; "
        f"{spec.metric} ({spec.direction}) over {len(spec.params)} parameter(s)"
    )
    if todo <= 0:
        print(f"[hpo] nothing to run; raise --n-trials above {done} to add trials")
        return

    def report(study: optuna.Study, trial: FrozenTrial) -> None:
        print(progress_line(spec, study, trial), flush=True)

    stop = optuna.study.MaxTrialsCallback(spec.n_trials, states=FINISHED)  # parallel workers share the target
    study.optimize(make_objective(spec), n_trials=todo, timeout=spec.timeout, callbacks=[report, stop])
    done = finished_count(study)
    if done < spec.n_trials:  # the timeout, or trials that failed without an error (e.g. a NaN metric)
        print(f"[hpo] the study holds {done} of {spec.n_trials} finished trials; run the same command to continue")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: validate the HPO config, run or resume the study, write the best config.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        0 on success, 1 when no trial completed, 2 for an invalid configuration, 130 when interrupted.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--config", required=True, help="HPO YAML (see the module docstring)")
    parser.add_argument("--n-trials", type=int, help="target number of finished trials in the study (total)")
    parser.add_argument("--storage", help="Optuna storage URL (default sqlite:///<runs_dir>/<study>.db)")
    parser.add_argument("--study-name", help="study name (default: study_name, else the HPO YAML's stem)")
    parser.add_argument("--timeout", type=float, help="seconds after which no new trial starts")
    parser.add_argument("--output", help="where to write the best trial's config")
    parser.add_argument("--check", action="store_true", help="validate the configuration and exit")
    args = parser.parse_args(argv)
    try:
        spec = load_spec(
            args.config,
            n_trials=args.n_trials,
            storage=args.storage,
            study_name=args.study_name,
            timeout=args.timeout,
            output=args.output,
        )
    except HpoConfigError as exc:
        print(f"hpo.py: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"[hpo] {spec.path}: OK; {spec.script} study {spec.study_name!r}, {spec.metric} ({spec.direction})")
        for param in spec.params:
            print(f"[hpo]   {param.describe()}")
        return 0
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LightningCLI's args parameter is intended.*")  # hpo.py's own argv
    code = 0
    try:
        study = open_study(spec)
    except HpoConfigError as exc:
        print(f"hpo.py: {exc}", file=sys.stderr)
        return 2
    try:
        optimize(spec, study)
    except KeyboardInterrupt:
        print("[hpo] interrupted: the running trial is marked failed; run the same command to continue", flush=True)
        code = 130
    written = write_best(spec, study)
    if written is None:
        print("[hpo] no completed trial yet; no best config written")
        return code or 1
    best = study.best_trial
    print(f"[hpo] best: trial {best.number} {spec.metric}={_fmt(best.value)} -> {written}")
    print(f"[hpo] train it: python {spec.script}.py --config {written}")
    baseline = written.with_name("baseline.yaml")
    if baseline.is_file():
        print(f"[hpo] the base config's values, same budget, to compare: python {spec.script}.py --config {baseline}")
    return code


if __name__ == "__main__":
    sys.exit(main())
