"""Mix-step distillation: ``python distillation_ms.py [--config configs/distillation_ms.yaml] [--model.alpha 0.3]``."""

from helper.cli import run_script

if __name__ == "__main__":
    run_script("distillation_ms")
