"""Two-step distillation, step 2 (prediction layer): ``python distillation_ts_2nd.py [--config ...]``."""

from helper.cli import run_script

if __name__ == "__main__":
    run_script("distillation_ts_2nd")
