"""Every YAML in configs/ parses against the script it belongs to (from the one table, ``helper.cli.SCRIPTS``); every
top-level training script runs its table entry; mistyped keys are refused."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

import helper.cli
from helper.cli import SCRIPTS, run, script_of_config
from helper.finetuner import ClfFinetune
from tests.tiny import REPO_ROOT

# hpo_*.yaml are search definitions for hpo.py, checked by tests/helper/test_hpo.py
CONFIGS = sorted(c for c in (REPO_ROOT / "configs").glob("*.yaml") if not c.name.startswith("hpo_"))


def _print_config(script: str, config: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """``--print_config`` of ``script`` with ``config``; returns what it printed."""
    entry = SCRIPTS[script]
    with pytest.raises(SystemExit) as done:
        run(
            entry.module,
            entry.config,
            tokenizer_from=entry.tokenizer_from,
            args=["--config", str(config), "--print_config"],
        )
    assert done.value.code in (0, None)
    return capsys.readouterr().out


def test_every_config_belongs_to_a_script():
    orphans = [c.name for c in CONFIGS if script_of_config(c) is None]
    assert not orphans, f"no script in helper.cli.SCRIPTS for {orphans}; name a config after its script"
    assert {script_of_config(c) for c in CONFIGS} == set(SCRIPTS)  # and every script has a config


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_script_runs_its_table_entry(script: str, monkeypatch: pytest.MonkeyPatch):
    """``python <script>.py`` runs the table's module with its default YAML (under ``configs/``) and tokenizer link."""
    entry = SCRIPTS[script]
    assert (REPO_ROOT / "configs" / entry.config).is_file()
    assert script_of_config(entry.config) == script
    calls = []
    monkeypatch.setattr(helper.cli, "run", lambda *args, **kwargs: calls.append((args, kwargs)))
    monkeypatch.setattr(sys, "argv", [f"{script}.py"])
    runpy.run_path(str(REPO_ROOT / f"{script}.py"), run_name="__main__")
    assert calls == [((entry.module, entry.config), {"tokenizer_from": entry.tokenizer_from, "args": None})]


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_config_parses(config: Path, capsys: pytest.CaptureFixture[str]):
    printed = _print_config(script_of_config(config), config, capsys)
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
