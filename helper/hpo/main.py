"""The ``hpo.py`` command line: validate the HPO YAML, run or resume the study, write the best config."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence

import optuna

from helper.hpo.configs import write_best
from helper.hpo.spec import HpoConfigError, load_spec
from helper.hpo.study import fmt_value, open_study, optimize


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: validate the HPO config, run or resume the study, write the best config.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        0 on success, 1 when no trial completed, 2 for an invalid configuration, 130 when interrupted.
    """
    parser = argparse.ArgumentParser(
        description="Optuna hyperparameter search over a training config (see docs/hpo.md)."
    )
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
    print(f"[hpo] best: trial {best.number} {spec.metric}={fmt_value(best.value)} -> {written}")
    print(f"[hpo] train it: python {spec.script}.py --config {written}")
    baseline = written.with_name("baseline.yaml")
    if baseline.is_file():
        print(f"[hpo] the base config's values, same budget, to compare: python {spec.script}.py --config {baseline}")
    return code
