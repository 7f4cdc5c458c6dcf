"""The bad-input matrix: each mistake is refused before any training step, with a message naming the field, the
value and what was expected, and nothing is written to the run or output folders.

Every case goes through the real command-line entry point (``helper.cli.run_script``, the scripts of
``helper.cli.SCRIPTS`` with their shipped configs) in an empty working directory, so "nothing written" is checked on
the folders the configs would use.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification

from helper.cli import SCRIPTS, run_script
from helper.finetuner import ClfFinetune
from tests.tiny import save_tiny_model, tiny_bert


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, minilm_path: str) -> Path:
    """An empty working directory holding a tiny fine-tuned-style teacher folder and a small JSON Lines data set."""
    monkeypatch.chdir(tmp_path)
    teacher = tmp_path / "teacher"
    save_tiny_model(teacher, minilm_path, layers=4, hidden=64, heads=4)
    write_data(tmp_path / "data", train=[("a fine day", 1), ("a sad day", 0)] * 8, validation=[("good", 1), ("bad", 0)])
    return tmp_path


def write_data(folder: Path, **splits: list[tuple[object, object]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        lines = [json.dumps({"sentence": text, "label": label}) for text, label in rows]
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + ("\n" if lines else ""))


def refused(workdir: Path, script: str, *args: str, expected: tuple[str, ...]) -> str:
    """Run a script's CLI in-process, expect a refusal naming ``expected``, and check nothing was written."""
    defaults = ["--data.dataset=data", "--trainer.max_steps=1"]
    if SCRIPTS[script].module is not ClfFinetune:
        defaults += ["--model.teacher=teacher", "--model.student={layers: [0, 3]}"]
    with pytest.raises((ValueError, OSError, SystemExit)) as err:
        run_script(script, args=[*defaults, *args])
    message = str(err.value)
    for part in expected:
        assert part in message, (part, message)
    assert not (workdir / "runs").exists() and not (workdir / "outputs").exists()
    return message


def test_unknown_adaptor_name(workdir):
    message = refused(
        workdir, "distillation_ms", "--model.adaptors=[AttnMiniLm]", expected=("AttnMiniLm", "AttnMiniLM")
    )
    assert "LogitKD" in message and "HidnTinyBERT" in message  # the valid names are listed


def test_logit_adaptor_in_step_one(workdir):
    refused(
        workdir,
        "distillation_ts_1st",
        "--model.adaptors=[AttnMiniLM, LogitKD]",
        expected=("LogitKD", "accepts inter adaptors"),
    )


def test_intermediate_adaptor_in_step_two(workdir):
    refused(
        workdir,
        "distillation_ts_2nd",
        "--model.student={layers: [0, 3]}",
        "--model.adaptors=[HidnTinyBERT]",
        expected=("HidnTinyBERT", "accepts logit adaptors"),
    )


def test_teacher_and_student_label_counts_differ(workdir):
    save_tiny_model(workdir / "student3", workdir / "teacher", layers=2, hidden=32, heads=2, num_labels=3)
    refused(workdir, "distillation_ms", "--model.student=student3", expected=("num_labels=3", "2 classes"))


def test_student_tokenizer_differs(workdir):
    tiny_bert(layers=2, hidden=32, heads=2).save_pretrained(workdir / "cased")
    AutoTokenizer.from_pretrained(workdir / "teacher", do_lower_case=False).save_pretrained(workdir / "cased")
    write_data(workdir / "data", train=[("A Fine Day", 1), ("A Sad Day", 0)] * 8, validation=[("Good", 1), ("Bad", 0)])
    refused(workdir, "distillation_ms", "--model.student=cased", expected=("tokenizers disagree", "A Fine Day"))


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        (5, ("label 5", "0..1")),
        (None, ("missing", "0..1")),
        (
            "x",
            (
                "split 'train', row 2: label 'x' (str) in 'label'; expected an integer in 0..1; the column mixes "
                "class ids and names, expected one kind throughout (all ids, or all names)",
            ),
        ),
        (0.5, ("0.5", "whole number")),
    ],
    ids=["out-of-range", "missing", "non-integer-string", "non-integer-float"],
)
def test_bad_labels(workdir, label, expected):
    write_data(workdir / "data", train=[("a fine day", 1), ("a sad day", 0), ("odd", label)], validation=[("ok", 1)])
    refused(workdir, "finetune", "--data.label_names=[negative, positive]", expected=expected)


@pytest.mark.parametrize("names", ["[NOT,OFF]", "[no, yes]", "[0, 1]"])
def test_unquoted_label_names_that_yaml_retypes(workdir, names):
    """YAML reads OFF/NO/YES as booleans and 0 as a number: the refusal names the flag, the value and the quoting."""
    message = refused(
        workdir, "finetune", f"--data.label_names={names}", expected=("--data.label_names", "expected every class")
    )
    assert """quote every name, e.g. --data.label_names '["NOT", "OFF"]'""" in message
    retyped = {"[NOT,OFF]": "['NOT', False]", "[no, yes]": "[False, True]", "[0, 1]": "[0, 1]"}[names]
    assert f"label_names (--data.label_names)={retyped}: entry" in message


def test_list_labels_are_refused_as_multi_label(workdir):
    rows = '{"text": "ok", "labels": [0, 2]}\n{"text": "no", "labels": [1]}\n'
    for split in ("train", "validation"):
        (workdir / "data" / f"{split}.jsonl").write_text(rows)
    refused(  # lists are multi-label data (issue #16): refused only when told the data are single-label
        workdir,
        "finetune",
        "--data.problem_type=single_label_classification",
        expected=("'labels' holds lists of labels", "multi_label_classification", "label_field"),
    )


@pytest.mark.parametrize("split", ["train", "validation"])
def test_empty_split(workdir, split):
    rows = {"train": [("a fine day", 1), ("a sad day", 0)], "validation": [("ok", 1), ("no", 0)]}
    rows[split] = []
    write_data(workdir / "data", **rows)
    refused(workdir, "finetune", expected=(split,))


def test_missing_text_columns(workdir):
    rows = '{"review_body": "ok", "label": 1}\n{"review_body": "no", "label": 0}\n'
    for split in ("train", "validation"):
        (workdir / "data" / f"{split}.jsonl").write_text(rows)
    refused(workdir, "finetune", expected=("no text field", "review_body"))
    refused(workdir, "finetune", "--data.text_fields=body", expected=("text_fields=['body']", "review_body"))


def test_out_of_range_scalars_reported_together(workdir):
    message = refused(
        workdir,
        "distillation_ms",
        "--model.alpha=1.5",
        "--model.temperature=0",
        "--model.lr=-0.1",
        expected=("alpha=1.5", "[0, 1]", "temperature=0", "> 0", "lr=-0.1"),
    )
    assert message.count("\n- ") >= 3


def test_negative_adaptor_weight(workdir):
    refused(
        workdir, "distillation_ms", "--model.adaptors=[{name: LogitKD, weight: -1}]", expected=("weight", "-1", ">= 0")
    )


def test_layer_map_out_of_range(workdir):
    refused(
        workdir,
        "distillation_ms",
        "--model.adaptors=[{name: HidnTinyBERT, layers: [[0, 7]]}]",
        expected=("adaptors[HidnTinyBERT].layers", "7", "0..3"),
    )


def test_widths_differ_with_projection_off(workdir):
    refused(
        workdir,
        "distillation_ms",
        "--model.student={num_layers: 2, hidden_size: 32, num_heads: 2}",
        "--model.adaptors=[{name: HidnTinyBERT, projection: false}]",
        expected=("projection", "32", "64"),
    )


def test_unsupported_architecture_for_intermediate_adaptors(workdir):
    config = GPT2Config(vocab_size=30522, n_embd=32, n_layer=2, n_head=2, num_labels=2, pad_token_id=0)
    GPT2ForSequenceClassification(config).save_pretrained(workdir / "gpt2")
    AutoTokenizer.from_pretrained(workdir / "teacher").save_pretrained(workdir / "gpt2")
    gpt2 = ["--model.teacher=gpt2", "--model.adaptors=[HidnTinyBERT]"]
    refused(workdir, "distillation_ms", *gpt2, "--model.student={num_layers: 1}", expected=("gpt2", "supported"))
    refused(workdir, "distillation_ms", *gpt2, "--model.student={layers: [0]}", expected=("gpt2", "supported"))


def test_teacher_missing_or_not_a_classifier(workdir):
    refused(workdir, "distillation_ms", "--model.teacher=./nowhere", expected=("./nowhere", "does not exist"))
    tiny_bert().bert.save_pretrained(workdir / "encoder")
    refused(workdir, "distillation_ms", "--model.teacher=encoder", expected=("encoder", "not a sequence classifier"))


def test_hub_names_offline(workdir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    refused(
        workdir, "distillation_ms", "--model.teacher=someone/some-model", expected=("someone/some-model", "unreachable")
    )
    refused(workdir, "finetune", "--data.dataset=some_dataset", expected=("some_dataset", "unreachable", "local"))


@pytest.mark.parametrize("typo", ["--model.alpah=0.3", "--data.batchsize=8", "--trainer.max_epoch=2"])
def test_unknown_or_mistyped_keys(workdir, typo, capsys):
    with pytest.raises(SystemExit) as err:
        run_script("distillation_ms", args=[typo])
    assert err.value.code not in (0, None)
    assert typo.split("=")[0].split(".")[-1] in capsys.readouterr().err
    assert not (workdir / "runs").exists() and not (workdir / "outputs").exists()
