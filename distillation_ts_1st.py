"""Two-step distillation, step 1 (intermediate layers): ``python distillation_ts_1st.py [--config ...]``."""

from helper.cli import run_script

if __name__ == "__main__":
    run_script("distillation_ts_1st")
