"""Mix-step distillation: ``python distillation_ms.py [--config configs/distillation_ms.yaml] [--model.alpha 0.3]``."""

from helper.cli import run
from helper.distiller import BaseDistiller

if __name__ == "__main__":
    run(BaseDistiller, "distillation_ms.yaml", tokenizer_from="model.teacher")
