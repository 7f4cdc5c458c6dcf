"""Optuna hyperparameter search over a training config (``python hpo.py --config ...``; keys in ``docs/hpo.md``).

Modules, each importing only those above it: :mod:`~helper.hpo.keys` (dotted keys into a config),
:mod:`~helper.hpo.space` (searched parameters), :mod:`~helper.hpo.spec` (the validated HPO YAML),
:mod:`~helper.hpo.configs` (trial, best and baseline configs), :mod:`~helper.hpo.study` (pruning, objective, the
study loop) and :mod:`~helper.hpo.main` (the command line).
"""

from helper.hpo.configs import best_config, trial_config, trial_values, write_baseline, write_best
from helper.hpo.keys import KeyPathError, canonical_adaptors, get_key, locate, set_key
from helper.hpo.main import main
from helper.hpo.space import Param, parse_param
from helper.hpo.spec import SCRIPTS, HpoConfigError, HpoSpec, cli_check, load_spec
from helper.hpo.study import OptunaPruning, enqueue_baseline, make_objective, open_study, optimize, progress_line

__all__ = [
    "SCRIPTS",
    "HpoConfigError",
    "HpoSpec",
    "KeyPathError",
    "OptunaPruning",
    "Param",
    "best_config",
    "canonical_adaptors",
    "cli_check",
    "enqueue_baseline",
    "get_key",
    "load_spec",
    "locate",
    "main",
    "make_objective",
    "open_study",
    "optimize",
    "parse_param",
    "progress_line",
    "set_key",
    "trial_config",
    "trial_values",
    "write_baseline",
    "write_best",
]
