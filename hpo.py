"""Optuna hyperparameter search over a training config: ``python hpo.py --config configs/hpo_distillation_ms.yaml``.

The HPO YAML's keys and the choices made are in ``docs/hpo.md``; the logic lives in :mod:`helper.hpo`.
"""

import sys

from helper.hpo import main

if __name__ == "__main__":
    sys.exit(main())
