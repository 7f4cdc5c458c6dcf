"""Pieces of ``benchmarks/throughput.py`` on tiny random models: the losses it times are the right ones."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch
import torch.nn.functional as F

from helper.distiller import BaseDistiller
from tests.adaptors.helpers import make_batch
from tests.conftest import REPO_ROOT, tiny_bert

_spec = importlib.util.spec_from_file_location("throughput_bench", REPO_ROOT / "benchmarks" / "throughput.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # dataclasses resolve their module by name
_spec.loader.exec_module(bench)

MIX = [*bench.INTER, "LogitKD"]


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    out = make_batch([9, 5, 12, 7], seed=1)
    out["labels"] = torch.tensor([0, 1, 1, 0])
    return out


def test_recipe_loss_is_alpha_ce_plus_t2_kl_and_matches_the_distiller_objective(batch):
    teacher, student = tiny_bert(layers=4, seed=0), tiny_bert(layers=2, hidden=32, heads=2, seed=1)
    alpha, t = 0.5, 4.0
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
    loss, outputs = bench.recipe_loss(student, teacher, inputs, alpha, t)

    s_logits = outputs.logits
    with torch.no_grad():
        t_logits = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    p_t = F.softmax(t_logits / t, dim=-1)
    kl = (p_t * (p_t.log() - F.log_softmax(s_logits / t, dim=-1))).sum(-1).mean()
    expected = alpha * F.cross_entropy(s_logits, batch["labels"]) + (1 - alpha) * t * t * kl
    torch.testing.assert_close(loss, expected)

    distiller = BaseDistiller(teacher, student, [("LogitKD", 1 - alpha)], alpha=alpha, temperature=t).eval()
    losses, d_logits, _ = distiller._distill(batch)
    torch.testing.assert_close(distiller._total(losses, d_logits, batch["labels"])["loss"], loss)


def test_eager_fed_losses_equal_hook_fed_losses(batch):
    teacher, student = tiny_bert(layers=4, seed=0), tiny_bert(layers=2, hidden=32, heads=2, seed=1)
    hooks = BaseDistiller(teacher, student, MIX, alpha=0.5, temperature=4.0).eval()
    eager = BaseDistiller(bench.eager_copy(teacher), bench.eager_copy(student), MIX, alpha=0.5, temperature=4.0).eval()
    eager.adaptors.load_state_dict(hooks.adaptors.state_dict())  # the same HidnTinyBERT projection
    eager.remove_taps()
    assert eager.teacher.config._attn_implementation == "eager"
    assert teacher.config._attn_implementation != "eager"  # the copy left the original alone

    want, s_want, _ = hooks._distill(batch)
    got, s_got, _ = bench.eager_distill(eager, batch)
    assert set(got) == set(want) == set(MIX)
    for name in MIX:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-5, msg=name)
    torch.testing.assert_close(s_got, s_want, rtol=1e-4, atol=1e-5)

    needs = bench.needed_taps(eager, "teacher")
    assert needs["queries"] == needs["keys"] == needs["values"] == {3}  # MiniLM relations: last layer
    assert 3 in needs["hidden"] and "logits" not in needs


def test_eager_distiller_step_trains_student_and_projection(batch):
    teacher, student = tiny_bert(layers=4, seed=0), tiny_bert(layers=2, hidden=32, heads=2, seed=1)
    distiller = BaseDistiller(bench.eager_copy(teacher), bench.eager_copy(student), MIX)
    distiller.remove_taps()
    opt = bench.make_optimizer(bench.distiller_params(distiller), lr=1e-2, weight_decay=0.0)
    proj = distiller.adaptors[2].proj.weight.detach().clone()
    settings = bench.Settings(torch.device("cpu"))
    bench.distiller_step(distiller, opt, settings, distill=lambda b: bench.eager_distill(distiller, b))(batch)
    assert not torch.equal(proj, distiller.adaptors[2].proj.weight)
    assert all(p.grad is None for p in distiller.student.parameters())  # zero_grad(set_to_none=True) ran


def test_time_steps_times_only_after_warmup():
    calls = []
    batches = [{"labels": torch.zeros(n), "input_ids": torch.zeros(n, 3 + n)} for n in (2, 3, 4, 5, 6)]
    result = bench.time_steps("k", "label", calls.append, batches, 2, bench.Settings(torch.device("cpu")))
    assert len(calls) == 5
    assert result.samples == 4 + 5 + 6 and result.steps == 3 and result.seconds > 0
    assert result.padded_length == pytest.approx((7 + 8 + 9) / 3)
    assert result.ms_per_step == pytest.approx(1000 * result.seconds / 3)
    assert result.peak_mb is not None and result.peak_mb >= result.delta_mb >= 0


def test_amortised_speed_and_floors():
    assert bench.amortised_speed(1000, 3, 0.0, 50.0) == pytest.approx(50.0)
    # 3000 samples at 100/s = 30 s, plus 10 s of cache build -> 75 samples/s
    assert bench.amortised_speed(1000, 3, 10.0, 100.0) == pytest.approx(75.0)
    assert bench.Floor("r", ">=", 2.0, 2.0).verdict == "PASS"
    assert bench.Floor("r", ">=", 2.0, 1.9).verdict == "FAIL"
    assert bench.Floor("r", "<=", 1.1, 1.2).verdict == "FAIL"
    assert bench.Floor("r", "<=", 1.1, None).verdict == "n/a"
    assert "PASS" in bench.Floor("r", "<=", 1.25, 1.0).line()


def test_memory_meter_sees_a_cpu_allocation():
    meter = bench.MemoryMeter(torch.device("cpu"))
    meter.start()
    block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    peak, delta = meter.stop()
    del block
    if meter.kind.startswith("peak process RSS"):
        assert delta >= 48
    assert peak >= delta >= 0


def test_main_runs_every_row_on_a_tiny_teacher(tmp_path, minilm_path, capsys):
    folder = tmp_path / "teacher"
    tiny_bert(layers=4, seed=0).save_pretrained(folder)
    args = ["--dataset", "demo", "--teacher", str(folder), "--tokenizer", minilm_path, "--student-layers", "0", "3"]
    args += ["--batch-size", "8", "--steps", "2", "--warmup", "1", "--max-train-samples", "32", "--max-length", "64"]
    args += ["--threads", "1", "--json", str(tmp_path / "out.json")]  # 1 thread: quick even on a busy machine
    threads = torch.get_num_threads()
    try:
        report = bench.main(args)
    finally:
        torch.set_num_threads(threads)

    keys = [r.key for r in report["rows"]]
    assert keys[:9] == [
        "cache_build",
        "teacher_fwd",
        "student_ce",
        "recipe_step",
        "kd_nocache",
        "kd_cache",
        "kd_cache_amort1",
        "kd_cache_amort3",
        "mix_hooks",
    ]
    assert keys[9:] == ["mix_eager", "pl_kd_cache", "pl_kd_cache_amort3", "hf_recipe"]
    steps = {r.key: r for r in report["rows"] if r.steps}
    assert all(r.steps == 2 and r.samples == 16 for k, r in steps.items() if not k.startswith(("pl_", "hf_")))
    assert steps["pl_kd_cache"].samples == 16 and "WARNING" not in steps["pl_kd_cache"].note
    accelerate = importlib.util.find_spec("accelerate") is not None
    assert ("hf_recipe" in steps) == accelerate
    measured = [f.value is not None for f in report["floors"]]
    assert measured == [accelerate, True, True, True]
    out = capsys.readouterr().out
    assert (
        "| config | samples/s | ms/step | peak mem MB | Δ mem MB |" in out
        and out.count(": PASS") + out.count(": FAIL") + out.count(": n/a") == 4
    )
    assert (tmp_path / "out.json").is_file()
