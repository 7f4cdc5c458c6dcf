"""Running a study: the pruning callback, the objective, opening or resuming the study, and the trial loop."""

from __future__ import annotations

import gc
import math
import warnings
from pathlib import Path
from typing import Any

import optuna
import pytorch_lightning as pl
from optuna.trial import FrozenTrial, TrialState

from helper.cli import run
from helper.hpo.configs import dump_config, trial_config, trial_values
from helper.hpo.keys import get_key
from helper.hpo.spec import PRUNERS, SAMPLERS, HpoConfigError, HpoSpec

HEARTBEAT_S = 60  # RDB storages: a trial without a heartbeat for 2 intervals is marked failed
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


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
        dump_config(trial_config(spec, trial.number, values), config_path)
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


def fmt_value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def progress_line(spec: HpoSpec, study: optuna.Study, trial: FrozenTrial) -> str:
    """One line per finished trial: number, state, value, params, best so far."""
    value = "-" if trial.value is None else fmt_value(trial.value)
    took = trial.duration.total_seconds() if trial.duration else 0.0
    params = ", ".join(f"{k}={fmt_value(v)}" for k, v in trial_values(spec, trial).items())
    try:
        best = study.best_trial
        best_text = f"best: trial {best.number} {spec.metric}={fmt_value(best.value)}"
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
