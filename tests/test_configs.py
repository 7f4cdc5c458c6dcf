"""Every YAML in configs/ parses against the script it belongs to; mistyped keys are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from helper.cli import run
from helper.distiller import BaseDistiller, InterDistiller, PredDistiller
from helper.finetuner import ClfFinetune

# hpo_*.yaml are search definitions for hpo.py, checked by tests/helper/test_hpo.py
CONFIGS = sorted(
    c for c in (Path(__file__).resolve().parents[1] / "configs").glob("*.yaml") if not c.name.startswith("hpo_")
)


def script_for(config: Path) -> tuple[type, str]:
    """The module class and tokenizer link of the script a config belongs to (by file-name prefix)."""
    name = config.stem
    if name.startswith("finetune"):
        return ClfFinetune, "model.model"
    if name.startswith("distillation_ts_1st"):
        return InterDistiller, "model.teacher"
    if name.startswith("distillation_ts_2nd"):
        return PredDistiller, "model.teacher"
    if name.startswith("distillation_"):  # distillation_ms.yaml and the mix-step recipes (distillation_sst2.yaml, ...)
        return BaseDistiller, "model.teacher"
    raise AssertionError(
        f"{config.name}: no script prefix (finetune*, distillation_ts_1st*, distillation_ts_2nd*, "
        "distillation_* for distillation_ms.py)"
    )


def test_there_are_configs_for_every_script():
    stems = {c.stem for c in CONFIGS}
    assert {"finetune", "distillation_ms", "distillation_ts_1st", "distillation_ts_2nd"} <= stems


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_config_parses(config, capsys):
    model_class, tokenizer_from = script_for(config)
    with pytest.raises(SystemExit) as done:
        run(model_class, config.name, tokenizer_from=tokenizer_from, args=["--config", str(config), "--print_config"])
    assert done.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "model:" in printed and "data:" in printed and "trainer:" in printed


@pytest.mark.parametrize("bad", ["--model.learning_rate=1e-4", "--data.batchsize=8", "--trainer.max_epoch=2"])
def test_mistyped_keys_are_refused(bad, capsys):
    with pytest.raises(SystemExit) as done:
        run(ClfFinetune, "finetune.yaml", args=[bad, "--print_config"])
    assert done.value.code not in (0, None)
    key = bad.split("=")[0].lstrip("-").split(".")[-1]
    assert key in capsys.readouterr().err


def test_mistyped_key_in_a_yaml_file_is_refused(tmp_path, capsys):
    config = tmp_path / "typo.yaml"
    config.write_text("model:\n  model: minilm\n  lerning_rate: 0.1\n")
    with pytest.raises(SystemExit) as done:
        run(ClfFinetune, "finetune.yaml", args=["--config", str(config), "--print_config"])
    assert done.value.code not in (0, None)
    assert "lerning_rate" in capsys.readouterr().err
