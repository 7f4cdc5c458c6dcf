"""Fine-tune a teacher classifier: ``python finetune.py [--config configs/finetune.yaml] [--model.lr 1e-4 ...]``."""

from helper.cli import run_script

if __name__ == "__main__":
    run_script("finetune")
