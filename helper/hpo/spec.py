"""An HPO YAML read and validated as a whole: :func:`load_spec` reports every problem at once, before any trial.

See ``docs/hpo.md`` for the keys. Values are checked against the script's own CLI (``--print_config``), so a key
must exist in the resolved base config and every bound or choice of the search space must parse.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import inspect
import io
import re
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytorch_lightning as pl
import yaml

from common.errors import ProblemsError
from helper.cli import REPO_ROOT, run, script_of_config
from helper.cli import SCRIPTS as CLI_SCRIPTS
from helper.hpo.keys import KeyPathError, NullSectionError, locate, set_key
from helper.hpo.space import Param, is_number, parse_param

#: Script name -> (LightningModule, the model argument the tokenizer follows), from :data:`helper.cli.SCRIPTS`.
SCRIPTS: dict[str, tuple[type[pl.LightningModule], str]] = {
    name: (script.module, script.tokenizer_from) for name, script in CLI_SCRIPTS.items()
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
#: Keys that every trial sets itself; searching them would be overwritten or break the bookkeeping.
RESERVED_SEARCH_KEYS = (
    "seed_everything",
    "test_after_fit",
    "trainer.logger",
    "trainer.default_root_dir",
    "trainer.enable_checkpointing",
)


class HpoConfigError(ProblemsError):
    """An invalid HPO configuration; ``problems`` lists every problem found."""

    headline = "invalid HPO configuration ({n} problem(s))"


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


def _script_for(base_config: Path) -> str | None:
    return script_of_config(base_config)


def _known_metrics(script: str, resolved: dict[str, Any] | None) -> list[str]:
    metrics = ["val_loss", "val_acc", "val_f1"]
    metrics += ["val_f1_micro", "val_auroc", "val_ap"]  # multi-label (val_acc: subset accuracy, val_f1: macro F1)
    metrics += ["val_pearson", "val_spearman", "val_mse"]  # regression
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
        except NullSectionError:
            continue  # inside a section left at null: the script's parser checks the key when each value is parsed
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
    lower_is_better = "loss" in str(metric) or metric == "val_mse"
    direction = raw.get("direction") or ("minimize" if lower_is_better else "maximize")
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
    if timeout is not None and (not is_number(timeout) or timeout <= 0):
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
