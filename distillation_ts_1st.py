"""Two-step distillation, step 1 (intermediate layers): ``python distillation_ts_1st.py [--config ...]``."""

from helper.cli import run
from helper.distiller import InterDistiller

if __name__ == "__main__":
    run(InterDistiller, "distillation_ts_1st.yaml", tokenizer_from="model.teacher")
