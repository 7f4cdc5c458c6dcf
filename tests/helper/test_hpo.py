"""hpo.py: search-space validation, config building, the best config, pruning, and studies that run and resume."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
import torch
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from helper import hpo
from helper.cli import run
from helper.distiller import BaseDistiller
from tests.tiny import REPO_ROOT, save_tiny_model

BASE = REPO_ROOT / "configs" / "distillation_ms.yaml"


def write_hpo(folder: Path, **fields: Any) -> Path:
    """Write an HPO YAML over configs/distillation_ms.yaml into ``folder`` and return its path."""
    config = {"base_config": str(BASE), **fields}
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def load_study(folder: Path, name: str = "study") -> optuna.Study:
    """The study that hpo.py stored under ``folder`` (the default SQLite storage)."""
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'runs' / 'hpo' / name}.db")


SPACE = {"model.alpha": {"type": "float", "low": 0.0, "high": 1.0}}


# ------------------------------------------------------------------ validation
def test_every_problem_is_reported_at_once_before_any_trial(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    space = {
        "model.alpha": {"type": "float", "low": 1.0, "high": 0.5},
        "model.lr": {"type": "float", "low": 0.0, "high": 1.0e-3, "log": True},
        "model.temperature": {"type": "floot", "low": 1, "high": 2},
        "model.alpah": {"type": "float", "low": 0.0, "high": 1.0},
        "model.adaptors.HidnTinyBERT.weight": {"type": "float", "low": 0.0, "high": 1.0},
        "data.batch_size": {"type": "categorical", "choices": []},
        "trainer.max_epochs": {"type": "int", "low": 2, "high": 2},
        "model.weight_decay": {"type": "categorical", "choices": [0.0, "lots"]},
    }
    path = write_hpo(tmp_path, metric="val_accuracy", search_space=space)
    with pytest.raises(hpo.HpoConfigError) as error:
        hpo.load_spec(path)
    problems = "\n".join(error.value.problems)
    expected = [
        "model.alpha: empty range, low=1.0 must be < high=0.5",
        "model.lr: log scale needs low > 0",
        "model.temperature: unknown type 'floot'",
        "model.alpah: 'model' has no key 'alpah' (did you mean 'alpha'?)",
        "no adaptor 'HidnTinyBERT' in 'model.adaptors'; it has: AttnMiniLM, ValMiniLM, LogitKD",
        "data.batch_size: categorical needs a non-empty list of choices",
        "trainer.max_epochs: empty range, low=2 must be < high=2",
        "model.weight_decay: value 'lots' does not parse",
        "metric: unknown metric 'val_accuracy'; expected one of val_loss, val_acc",
    ]
    for fragment in expected:
        assert fragment in problems
    assert len(error.value.problems) == len(expected)

    assert hpo.main(["--config", str(path)]) == 2
    assert "invalid HPO configuration (9 problem(s))" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists(), "no study may be created for an invalid configuration"


def test_settings_and_sections_are_checked_too(tmp_path):
    path = write_hpo(
        tmp_path,
        n_trail=3,
        seed_mode="random",
        sampler={"type": "tpe", "n_startup": 2},
        pruner="never",
        overrides={"data.max_train_sample": 10, "model.alpha": 0.5},
        search_space={
            "model.alpha": {"type": "float", "low": 0.0, "high": 1.0},
            "seed_everything": {"type": "int", "low": 1, "high": 9},
            "model.adaptors.AttnMiniLM.wieght": {"type": "float", "low": 0.0, "high": 1.0},
        },
    )
    with pytest.raises(hpo.HpoConfigError) as error:
        hpo.load_spec(path)
    problems = "\n".join(error.value.problems)
    for fragment in [
        "n_trail: unknown HPO key (did you mean 'n_trials'?)",
        "seed_mode: expected fixed or per_trial",
        "sampler: tpe takes no argument(s) ['n_startup']",
        "pruner: unknown type 'never'",
        "overrides.data.max_train_sample: 'data' has no key 'max_train_sample' (did you mean 'max_train_samples'?)",
        "search_space.model.alpha: also given in overrides",
        "search_space.seed_everything: set by hpo.py for every trial",
        "adaptor AttnMiniLM has no option 'wieght'; accepted: layers, relation_heads, weight",
    ]:
        assert fragment in problems


@pytest.mark.parametrize("config", sorted((REPO_ROOT / "configs").glob("hpo_*.yaml")), ids=lambda c: c.name)
def test_every_shipped_hpo_config_is_valid(config, capsys):
    assert hpo.main(["--config", str(config), "--check"]) == 0
    assert "OK" in capsys.readouterr().out


def test_the_shipped_sst2_study():
    spec = hpo.load_spec(REPO_ROOT / "configs" / "hpo_distillation_ms.yaml")
    assert spec.script == "distillation_ms" and spec.n_trials == 10
    assert (spec.metric, spec.direction) == ("val_acc", "maximize")
    assert spec.storage == "sqlite:///runs/hpo/hpo_distillation_ms.db"
    assert spec.overrides["data.dataset"] == "../shared/data/sst2" and spec.overrides["data.max_train_samples"] == 2000
    assert "model.adaptors.AttnMiniLM.weight" in [p.key for p in spec.params]
    assert hpo.load_spec(spec.path, n_trials=3, study_name="other").storage == "sqlite:///runs/hpo/other.db"


# ------------------------------------------------------------------ config building
@pytest.mark.parametrize(
    "adaptors",
    [
        [{"name": "AttnMiniLM", "weight": 1.0}, {"name": "LogitKD", "temperature": 2.0}],
        {"AttnMiniLM": 1.0, "LogitKD": {"temperature": 2.0}},
        [["AttnMiniLM", 1.0], {"LogitKD": {"temperature": 2.0}}],
    ],
    ids=["dicts", "mapping", "pairs"],
)
def test_adaptor_options_are_addressed_by_name_in_any_spec_form(adaptors):
    cfg = {"model": {"adaptors": adaptors}}
    hpo.set_key(cfg, "model.adaptors.AttnMiniLM.weight", 0.25)
    hpo.set_key(cfg, "model.adaptors.LogitKD.weight", 0.5)
    assert cfg["model"]["adaptors"] == [
        {"name": "AttnMiniLM", "weight": 0.25},
        {"name": "LogitKD", "temperature": 2.0, "weight": 0.5},
    ]
    assert hpo.get_key(cfg, "model.adaptors.LogitKD.temperature") == 2.0
    assert hpo.get_key(cfg, "model.adaptors.AttnMiniLM.relation_heads") is None  # an accepted option at its default
    with pytest.raises(KeyError, match="no adaptor 'ValMiniLM'"):
        hpo.get_key(cfg, "model.adaptors.ValMiniLM.weight")


def test_list_elements_by_class_name_or_index_and_new_keys():
    cfg = {"trainer": {"callbacks": [{"class_path": "pytorch_lightning.callbacks.ModelCheckpoint", "init_args": {}}]}}
    hpo.set_key(cfg, "trainer.callbacks.ModelCheckpoint.init_args.monitor", "val_acc")
    hpo.set_key(cfg, "trainer.callbacks.0.init_args.mode", "max")
    hpo.set_key(cfg, "trainer.gradient_clip_val", 1.0)  # missing in the YAML: created
    assert cfg["trainer"]["callbacks"][0]["init_args"] == {"monitor": "val_acc", "mode": "max"}
    assert cfg["trainer"]["gradient_clip_val"] == 1.0
    with pytest.raises(KeyError, match="no element 'EarlyStopping'"):
        hpo.get_key(cfg, "trainer.callbacks.EarlyStopping.init_args.patience")


def test_trial_config_is_base_plus_overrides_plus_values_with_its_own_bookkeeping(tmp_path):
    path = write_hpo(
        tmp_path,
        seed_mode="per_trial",
        overrides={"data.max_train_samples": 64, "trainer.max_epochs": 1},
        search_space={
            **SPACE,
            "model.adaptors.ValMiniLM.weight": {"type": "float", "low": 0.0, "high": 2.0},
            "model.student.layers": {"type": "categorical", "choices": [[0, 5], [0, 2, 5]]},
        },
    )
    spec = hpo.load_spec(path)
    values = {"model.alpha": 0.3, "model.adaptors.ValMiniLM.weight": 1.5, "model.student.layers": [0, 2, 5]}
    cfg = hpo.trial_config(spec, 3, values)
    base = yaml.safe_load(BASE.read_text())
    assert cfg["seed_everything"] == base["seed_everything"] + 3
    assert cfg["test_after_fit"] is False  # trials never look at the test split
    assert cfg["model"]["alpha"] == 0.3 and cfg["model"]["student"] == {"layers": [0, 2, 5]}
    weights = {a["name"]: a["weight"] for a in cfg["model"]["adaptors"]}
    assert weights == {"AttnMiniLM": 1.0, "ValMiniLM": 1.5, "LogitKD": 1.0}
    assert cfg["data"]["max_train_samples"] == 64 and cfg["trainer"]["max_epochs"] == 1
    assert cfg["data"]["dataset"] == base["data"]["dataset"] and cfg["model"]["lr"] == base["model"]["lr"]
    trainer = cfg["trainer"]
    assert trainer["default_root_dir"] == "runs/hpo/study/trial_3"
    assert trainer["logger"]["class_path"].endswith("CSVLogger")
    assert trainer["callbacks"] == [] and trainer["enable_checkpointing"] is False  # no checkpoint, no export
    assert base["model"]["alpha"] != 0.3 and yaml.safe_load(BASE.read_text()) == base  # the base is untouched


def test_a_key_left_at_its_default_in_the_base_is_filled_from_the_resolved_config(tmp_path):
    base = yaml.safe_load(BASE.read_text())
    del base["model"]["adaptors"]  # BaseDistiller's default: LogitKD alone
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    path = tmp_path / "study.yaml"
    space = {"model.adaptors.LogitKD.temperature": {"type": "float", "low": 1.0, "high": 4.0}}
    path.write_text(yaml.safe_dump({"base_config": "base.yaml", "script": "distillation_ms", "search_space": space}))
    spec = hpo.load_spec(path)  # base_config relative to the HPO YAML's folder
    cfg = hpo.trial_config(spec, 0, {"model.adaptors.LogitKD.temperature": 2.0})
    assert cfg["model"]["adaptors"] == [{"name": "LogitKD", "temperature": 2.0}]
    assert cfg["model"]["alpha"] == base["model"]["alpha"]


def test_keys_inside_a_section_left_null_are_searched_and_checked_by_the_parser(tmp_path):
    """``data.augment`` is null in the base (no augmentation): ``data.augment.copies`` starts the section in each
    trial; a key the section does not have is refused by the script's parser before any trial."""
    assert yaml.safe_load(BASE.read_text())["data"].get("augment") is None
    space = {
        "data.augment.copies": {"type": "int", "low": 1, "high": 4},
        "data.augment.p": {"type": "float", "low": 0.1, "high": 0.5},
        "data.balance.power": {"type": "float", "low": 0.25, "high": 1.0},
    }
    spec = hpo.load_spec(write_hpo(tmp_path, search_space=space))
    cfg = hpo.trial_config(spec, 0, {"data.augment.copies": 3, "data.augment.p": 0.2, "data.balance.power": 0.5})
    assert cfg["data"]["augment"] == {"copies": 3, "p": 0.2} and cfg["data"]["balance"] == {"power": 0.5}
    bad = write_hpo(tmp_path, search_space={"data.augment.copiez": {"type": "int", "low": 1, "high": 4}})
    with pytest.raises(
        hpo.HpoConfigError, match=r"search_space\.data\.augment\.copiez: value 1 does not parse.*copiez"
    ):
        hpo.load_spec(bad)


def finished_trial(spec: hpo.HpoSpec, number: int, value: float, values: dict[str, Any]) -> optuna.trial.FrozenTrial:
    """A complete trial as Optuna stores it (categorical list choices as JSON text)."""
    params, dists = {}, {}
    for p in spec.params:
        if p.type == "float":
            params[p.key], dists[p.key] = values[p.key], FloatDistribution(p.low, p.high, log=p.log)
        elif p.type == "int":
            params[p.key], dists[p.key] = values[p.key], IntDistribution(p.low, p.high)
        else:
            choices = [json.dumps(c) for c in p.choices]
            params[p.key], dists[p.key] = json.dumps(values[p.key]), CategoricalDistribution(choices)
    trial = optuna.trial.create_trial(params=params, distributions=dists, value=value, user_attrs={"seed": 7})
    trial.number = number
    return trial


def test_the_best_config_parses_with_the_script_and_holds_the_best_values(tmp_path, capsys):
    path = write_hpo(
        tmp_path,
        best_export="outputs/student_best",
        overrides={"trainer.max_epochs": 1},
        best_overrides={"trainer.max_epochs": 2},
        search_space={
            **SPACE,
            "model.adaptors.AttnMiniLM.weight": {"type": "float", "low": 0.0, "high": 2.0},
            "model.student.layers": {"type": "categorical", "choices": [[0, 5], [0, 2, 5]]},
        },
    )
    spec = hpo.load_spec(path, output=str(tmp_path / "best.yaml"))
    study = optuna.create_study(direction="maximize")
    study.add_trial(
        finished_trial(
            spec, 0, 0.6, {"model.alpha": 0.1, "model.adaptors.AttnMiniLM.weight": 0.5, "model.student.layers": [0, 5]}
        )
    )  # noqa: E501
    best = {"model.alpha": 0.7, "model.adaptors.AttnMiniLM.weight": 1.25, "model.student.layers": [0, 2, 5]}
    study.add_trial(finished_trial(spec, 1, 0.8, best))
    written = hpo.write_best(spec, study)
    assert written == tmp_path / "best.yaml"
    text = written.read_text()
    assert "# trial 1: val_acc = 0.8" in text and f"python distillation_ms.py --config {written}" in text

    with pytest.raises(SystemExit) as done:
        run(BaseDistiller, "distillation_ms.yaml", "model.teacher", args=["--config", str(written), "--print_config"])
    assert done.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["seed_everything"] == 7
    assert printed["model"]["alpha"] == 0.7 and printed["model"]["student"] == {"layers": [0, 2, 5]}
    assert {a["name"]: a["weight"] for a in printed["model"]["adaptors"]}["AttnMiniLM"] == 1.25
    assert printed["trainer"]["max_epochs"] == 2  # best_overrides
    callbacks = {c["class_path"].rsplit(".", 1)[-1]: c["init_args"] for c in printed["trainer"]["callbacks"]}
    assert callbacks["HgExport"]["dirpath"] == "outputs/student_best"
    assert (callbacks["ModelCheckpoint"]["monitor"], callbacks["ModelCheckpoint"]["mode"]) == ("val_acc", "max")
    assert callbacks["ModelCheckpoint"]["dirpath"] == "runs/hpo/study/best/checkpoints"


# ------------------------------------------------------------------ pruning
def fake_trainer(**metrics: float) -> SimpleNamespace:
    """What the pruning callback reads from a trainer."""
    return SimpleNamespace(
        sanity_checking=False, should_stop=False, callback_metrics={k: torch.tensor(v) for k, v in metrics.items()}
    )


def test_pruning_callback_reports_every_validation_and_stops_a_pruned_trial():
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.5))
    trial = study.ask()
    callback = hpo.OptunaPruning(trial, "val_acc", "maximize")
    sanity = fake_trainer(val_acc=0.0)
    sanity.sanity_checking = True
    callback.on_validation_end(sanity, None)
    assert callback.values == []
    good = fake_trainer(val_acc=0.75)
    callback.on_validation_end(good, None)
    assert not good.should_stop and callback.pruned is None
    bad = fake_trainer(val_acc=0.25)
    callback.on_validation_end(bad, None)
    assert bad.should_stop and "pruned at validation 1 with val_acc=0.25" in callback.pruned
    assert callback.best == 0.75
    assert study.trials[0].intermediate_values == {0: 0.75, 1: 0.25}
    with pytest.raises(KeyError, match="'val_f1' was not logged"):
        hpo.OptunaPruning(study.ask(), "val_f1").on_validation_end(fake_trainer(val_acc=0.5), None)


# ------------------------------------------------------------------ studies
def simulated_run(interrupt_at: set[int]) -> Any:
    """A stand-in for helper.cli.run in trials: one validation, val_acc = the trial's alpha; Ctrl-C in some trials."""

    def fake_run(module, default_config, tokenizer_from, args, extra_callbacks=()):
        if "--print_config" in args:  # the validation before the trials parses for real
            return run(module, default_config, tokenizer_from, args)
        config = yaml.safe_load(Path(args[1]).read_text())
        number = int(Path(args[1]).stem.split("_")[1])
        if number in interrupt_at:
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt:
                raise SystemExit(1) from None  # what Lightning does on Ctrl-C (the interrupt stays the context)
        extra_callbacks[0].on_validation_end(fake_trainer(val_acc=config["model"]["alpha"]), None)
        return SimpleNamespace()

    return fake_run


def test_an_interrupted_trial_fails_and_the_next_run_finishes_the_study(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = write_hpo(tmp_path, n_trials=3, sampler="random", search_space=SPACE)
    monkeypatch.setattr(hpo.study, "run", simulated_run(interrupt_at={1}))
    assert hpo.main(["--config", str(path)]) == 130
    out = capsys.readouterr().out
    assert "[hpo] trial 0 (baseline: the base config's values) COMPLETE val_acc=" in out and "interrupted" in out
    assert [t.state for t in load_study(tmp_path).trials] == [TrialState.COMPLETE, TrialState.FAIL]

    assert hpo.main(["--config", str(path)]) == 0  # resumes: two more finished trials reach the target of 3
    study = load_study(tmp_path)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL, *[TrialState.COMPLETE] * 2]
    alphas = [t.params["model.alpha"] for t in study.trials if t.state == TrialState.COMPLETE]
    assert study.best_value == pytest.approx(max(alphas))  # val_acc is the alpha, through a float32 tensor
    best = yaml.safe_load((tmp_path / "outputs" / "hpo" / "study" / "best.yaml").read_text())
    assert best["model"]["alpha"] == study.best_params["model.alpha"]

    assert hpo.main(["--config", str(path)]) == 0
    assert "nothing to run" in capsys.readouterr().out and len(load_study(tmp_path).trials) == 4


def test_a_tiny_study_trains_then_resumes_with_continued_trial_numbers(tmp_path, monkeypatch, minilm_path, capsys):
    monkeypatch.chdir(tmp_path)
    teacher = tmp_path / "teacher"
    save_tiny_model(teacher, minilm_path, layers=4, hidden=64, heads=4)
    overrides = {
        "model.teacher": str(teacher),
        "model.student": {"layers": [0, 3]},
        "data.max_train_samples": 32,
        "data.max_eval_samples": 16,
        "data.max_length": 32,
        "data.batch_size": 16,
        "trainer.max_steps": 2,
        "trainer.num_sanity_val_steps": 0,
    }
    space = {**SPACE, "model.adaptors.AttnMiniLM.weight": {"type": "float", "low": 0.0, "high": 2.0}}
    path = write_hpo(tmp_path, overrides=overrides, search_space=space)

    assert hpo.main(["--config", str(path), "--n-trials", "2"]) == 0
    assert hpo.main(["--config", str(path), "--n-trials", "3"]) == 0  # the same study: one more trial
    out = capsys.readouterr().out
    assert "2 finished trial(s), target 3" in out and "[hpo] trial 2 COMPLETE" in out
    study = load_study(tmp_path)
    assert [t.number for t in study.trials] == [0, 1, 2]
    assert all(t.state == TrialState.COMPLETE and 0 <= t.value <= 1 for t in study.trials)
    runs = tmp_path / "runs" / "hpo" / "study"
    for number in range(3):
        trial = yaml.safe_load((runs / f"trial_{number}.yaml").read_text())
        assert trial["model"]["alpha"] == study.trials[number].params["model.alpha"]
        assert (runs / f"trial_{number}" / "metrics.csv").is_file()
    assert not (tmp_path / "outputs" / "student_hpo").exists(), "trials export nothing"
    best = yaml.safe_load((tmp_path / "outputs" / "hpo" / "study" / "best.yaml").read_text())
    assert best["model"]["alpha"] == study.best_params["model.alpha"]


def test_the_first_trial_of_a_new_study_is_the_base_configs_own_values(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    space = {
        **SPACE,  # the base alpha 0.5 is inside [0, 1]
        "model.lr": {"type": "float", "low": 1.0e-3, "high": 1.0e-2, "log": True},  # the base lr 1e-4 is not
        "model.adaptors.AttnMiniLM.weight": {"type": "float", "low": 0.0, "high": 2.0},
        "model.student.layers": {"type": "categorical", "choices": [[0, 1], [0, 5]]},
    }
    path = write_hpo(tmp_path, n_trials=2, sampler="random", search_space=space)
    monkeypatch.setattr(hpo.study, "run", simulated_run(set()))
    assert hpo.main(["--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "baseline trial: model.lr=0.0001 outside the search space" in out
    first, second = load_study(tmp_path).trials
    assert first.user_attrs["baseline"] and "baseline" not in second.user_attrs
    assert first.params["model.alpha"] == 0.5 and first.params["model.adaptors.AttnMiniLM.weight"] == 1.0
    assert json.loads(first.params["model.student.layers"]) == [0, 5]
    assert 1e-3 <= first.params["model.lr"] <= 1e-2  # sampled
    trial = yaml.safe_load((tmp_path / "runs" / "hpo" / "study" / "trial_0.yaml").read_text())
    assert trial["model"]["alpha"] == 0.5 and trial["model"]["student"]["layers"] == [0, 5]
    # the baseline's own runnable config, beside best.yaml: same budget, its own export folder
    baseline = yaml.safe_load((tmp_path / "outputs" / "hpo" / "study" / "baseline.yaml").read_text())
    assert baseline["model"]["alpha"] == 0.5 and baseline["model"]["lr"] == first.params["model.lr"]
    exports = [c for c in baseline["trainer"]["callbacks"] if c["class_path"].endswith("HgExport")]
    assert exports[0]["init_args"]["dirpath"] == "outputs/student_hpo_baseline"
    assert "baseline.yaml" in out

    # resuming does not queue it again; enqueue_base: false starts with a sampled trial
    assert hpo.main(["--config", str(path), "--n-trials", "3"]) == 0
    assert sum(bool(t.user_attrs.get("baseline")) for t in load_study(tmp_path).trials) == 1
    path = write_hpo(tmp_path, n_trials=1, sampler="random", search_space=SPACE, enqueue_base=False, study_name="off")
    assert hpo.main(["--config", str(path)]) == 0
    assert "baseline" not in load_study(tmp_path, "off").trials[0].user_attrs
