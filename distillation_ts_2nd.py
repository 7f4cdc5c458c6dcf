"""Two-step distillation, step 2 (prediction layer): ``python distillation_ts_2nd.py [--config ...]``."""

from helper.cli import run
from helper.distiller import PredDistiller

if __name__ == "__main__":
    run(PredDistiller, "distillation_ts_2nd.yaml", tokenizer_from="model.teacher")
