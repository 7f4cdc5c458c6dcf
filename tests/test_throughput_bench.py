"""Pieces of ``benchmarks/throughput.py`` on tiny random models: the losses it times are the right ones."""

from __future__ import annotations

import importlib.util
import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from benchmarks import throughput
from benchmarks.clocks import Settings
from benchmarks.eager_taps import eager_copy, eager_distill, needed_taps, use_attention_capture
from benchmarks.hf_recipe import recipe_loss
from benchmarks.interleave import Arm, Floor, Sample, Spread, per_round, run_rounds, time_loop
from benchmarks.memory_meter import MemoryMeter
from benchmarks.step_loops import distiller_params, distiller_step, make_optimizer, step_arm
from benchmarks.throughput_arms import INTER, tracked_ratios
from benchmarks.throughput_report import Row, amortised_row, amortised_speed
from helper.distiller import BaseDistiller
from tests.adaptors.helpers import make_batch
from tests.tiny import tiny_bert

MIX = [*INTER, "LogitKD"]
CPU = Settings(torch.device("cpu"))


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    out = make_batch([9, 5, 12, 7], seed=1)
    out["labels"] = torch.tensor([0, 1, 1, 0])
    return out


def test_recipe_loss_is_alpha_ce_plus_t2_kl_and_matches_the_distiller_objective(batch):
    teacher, student = tiny_bert(layers=4, seed=0), tiny_bert(layers=2, hidden=32, heads=2, seed=1)
    alpha, t = 0.5, 4.0
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
    loss, outputs = recipe_loss(student, teacher, inputs, alpha, t)

    s_logits = outputs.logits
    with torch.no_grad():
        t_logits = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    p_t = F.softmax(t_logits / t, dim=-1)
    kl = (p_t * (p_t.log() - F.log_softmax(s_logits / t, dim=-1))).sum(-1).mean()
    expected = alpha * F.cross_entropy(s_logits, batch["labels"]) + (1 - alpha) * t * t * kl
    torch.testing.assert_close(loss, expected)

    distiller = BaseDistiller(teacher, student, [("LogitKD", 1 - alpha)], alpha=alpha, temperature=t).eval()
    losses, d_logits, _ = distiller.distill(batch)
    torch.testing.assert_close(distiller.total_loss(losses, d_logits, batch["labels"])["loss"], loss)


def test_eager_fed_losses_equal_hook_fed_losses(batch):
    teacher, student = tiny_bert(layers=4, seed=0), tiny_bert(layers=2, hidden=32, heads=2, seed=1)
    hooks = BaseDistiller(teacher, student, MIX, alpha=0.5, temperature=4.0).eval()
    eager = BaseDistiller(eager_copy(teacher), eager_copy(student), MIX, alpha=0.5, temperature=4.0).eval()
    eager.adaptors.load_state_dict(hooks.adaptors.state_dict())  # the same HidnTinyBERT projection
    eager.remove_taps()
    assert eager.teacher.config._attn_implementation == "eager"
    assert teacher.config._attn_implementation != "eager"  # the copy left the original alone

    want, s_want, _ = hooks.distill(batch)
    got, s_got, _ = eager_distill(eager, batch)
    assert set(got) == set(want) == set(MIX)
    for name in MIX:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-5, msg=name)
    torch.testing.assert_close(s_got, s_want, rtol=1e-4, atol=1e-5)

    needs = needed_taps(eager, "teacher")
    assert needs["queries"] == needs["keys"] == needs["values"] == {3}  # MiniLM relations: last layer
    assert 3 in needs["hidden"] and "logits" not in needs


def test_attention_capture_losses_equal_eager_fed_losses_with_padding(batch):
    teacher, student = tiny_bert(layers=4, seed=0), tiny_bert(layers=2, hidden=32, heads=2, seed=1)
    assert not batch["attention_mask"].all()
    capture = BaseDistiller(teacher, student, MIX, alpha=0.5, temperature=4.0).eval()
    use_attention_capture(capture)
    assert capture.t_taps.capture == capture.s_taps.capture == "attention"
    assert teacher.config._attn_implementation == "distiller_taps_sdpa"
    eager = BaseDistiller(eager_copy(teacher), eager_copy(student), MIX, alpha=0.5, temperature=4.0).eval()
    eager.adaptors.load_state_dict(capture.adaptors.state_dict())
    eager.remove_taps()
    assert eager.teacher.config._attn_implementation == "eager"

    got, s_got, _ = capture.distill(batch)
    want, s_want, _ = eager_distill(eager, batch)
    for name in MIX:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-5, msg=name)
    torch.testing.assert_close(s_got, s_want, rtol=1e-4, atol=1e-5)
    capture.remove_taps()
    assert teacher.config._attn_implementation == student.config._attn_implementation == "sdpa"


def test_eager_distiller_step_trains_student_and_projection(batch):
    teacher, student = tiny_bert(layers=4, seed=0), tiny_bert(layers=2, hidden=32, heads=2, seed=1)
    distiller = BaseDistiller(eager_copy(teacher), eager_copy(student), MIX)
    distiller.remove_taps()
    opt = make_optimizer(distiller_params(distiller), lr=1e-2, weight_decay=0.0)
    proj = distiller.adaptors[2].proj.weight.detach().clone()
    settings = Settings(torch.device("cpu"))
    distiller_step(distiller, opt, settings, distill=lambda b: eager_distill(distiller, b))(batch)
    assert not torch.equal(proj, distiller.adaptors[2].proj.weight)
    assert all(p.grad is None for p in distiller.student.parameters())  # zero_grad(set_to_none=True) ran


class FakeMachine:
    """A clock that only moves when work is done, at a speed that drifts from round to round."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slowdown = 1.0

    def clock(self) -> float:
        return self.now

    def work(self, cost: float) -> None:
        self.now += cost * self.slowdown


def test_run_rounds_warms_each_arm_once_then_alternates():
    log: list[str] = []

    def arm(key: str) -> Arm:
        return Arm(key, key, lambda: log.append(key) or Sample(1.0, 10, 2), lambda: log.append(f"warm {key}"))

    messages: list[str] = []
    out = run_rounds([arm("A"), arm("B"), arm("C")], 3, progress=messages.append)
    assert log == ["warm A", "warm B", "warm C", *(["A", "B", "C"] * 3)]
    assert list(out) == ["A", "B", "C"] and all(len(v) == 3 for v in out.values())
    assert sum("[round 3/3]" in m for m in messages) == 3
    with pytest.raises(ValueError, match="rounds=0"):
        run_rounds([arm("A")], 0)
    with pytest.raises(ValueError, match=r"repeated: \['A'\]"):
        run_rounds([arm("A"), arm("A")], 1)


def test_per_round_ratios_cancel_a_drifting_machine():
    machine = FakeMachine()
    slowdowns = iter([1.0, 1.0, 3.0, 3.0, 0.5, 0.5, 2.0, 2.0, 1.5, 1.5])  # the machine changes between rounds

    def arm(key: str, cost: float) -> Arm:
        def measure() -> Sample:
            machine.slowdown = next(slowdowns)
            seconds = time_loop(lambda _: machine.work(cost), range(4), clock=machine.clock)
            return Sample(seconds, 4 * 8, 4)

        return Arm(key, key, measure)

    out = run_rounds([arm("fast", 1.0), arm("slow", 1.1)], 5)
    fast = [s.ms_per_step for s in out["fast"]]
    slow = [s.ms_per_step for s in out["slow"]]
    assert fast == pytest.approx([1000, 3000, 500, 2000, 1500])  # the drift itself: a factor 6 between rounds
    ratios = per_round(lambda a, b: a / b, slow, fast)
    assert ratios == pytest.approx([1.1] * 5)  # ...cancels inside each round
    assert Floor("slow / fast", "<=", 1.2, ratios).verdict == "PASS"
    tight = Floor("slow / fast", "<=", 1.05, ratios)
    assert tight.verdict == "FAIL" and tight.agreed == 0
    assert "0/5 rounds agree" in tight.line() and "1.100" in tight.line()


def test_floor_passes_only_when_the_median_holds_and_counts_agreeing_rounds():
    holds = Floor("r", "<=", 1.0, [0.9, 1.3, 1.0, 1.2, 0.95])
    assert holds.value == pytest.approx(1.0) and holds.verdict == "PASS" and holds.agreed == 3
    assert "3/5 rounds agree" in holds.line() and "rounds 0.900–1.300" in holds.line()
    fails = Floor("r", "<=", 1.0, [1.01, 0.9, 1.2, 1.3, 1.0])
    assert fails.value == pytest.approx(1.01) and fails.verdict == "FAIL" and fails.agreed == 2
    at_least = Floor("r", ">=", 2.0, [2.5, 1.9, 2.1, None])  # a round without the inputs is left out
    assert at_least.value == pytest.approx(2.1) and at_least.verdict == "PASS" and at_least.agreed == 2
    assert "2/3 rounds agree" in at_least.line()
    assert Floor("r", "<=", 1.1, [None, None]).verdict == "n/a"
    assert Floor("r", "<=", 1.1).line().endswith("n/a")
    with pytest.raises(ValueError, match="op='<'"):
        Floor("r", "<", 1.0)


def test_spread_median_min_max_iqr_and_per_round_gaps():
    spread = Spread.of([5.0, 1.0, float("nan"), 3.0, None, 2.0, 4.0])
    assert spread.n == 5 and spread.median == 3.0 and (spread.low, spread.high) == (1.0, 5.0)
    assert spread.iqr == pytest.approx((2.0, 4.0))
    assert spread.text() == "3.0 (1.0–5.0)" and Spread.of([]).text() == "—" and Spread.of([2.0]).iqr is None
    assert per_round(lambda a, b: a / b, [2.0, None, 3.0, 1.0], [1.0, 1.0, float("nan"), 0.0]) == [
        2.0,
        None,
        None,
        None,
    ]
    with pytest.raises(ValueError, match="differ in length"):
        per_round(lambda a, b: a / b, [1.0], [1.0, 2.0])


def test_step_arm_warms_up_once_rewarms_each_round_and_times_the_same_batches():
    seen: list[int] = []
    batches = [{"labels": torch.zeros(n), "input_ids": torch.zeros(n, 3 + n), "id": n} for n in (2, 3, 4, 5, 6)]
    rows: dict = {}
    arm = step_arm("k", "label", lambda b: seen.append(b["id"]), batches[:2], batches[:1], batches[2:], CPU, rows)
    out = run_rounds([arm], 2)
    assert seen == [2, 3] + [2, 4, 5, 6] * 2  # one-time warm-up, then per round: 1 untimed + the 3 timed batches
    sample = out["k"][0]
    assert sample.samples == 4 + 5 + 6 and sample.steps == 3 and sample.seconds > 0
    assert sample.padded_length == pytest.approx((7 + 8 + 9) / 3)
    assert sample.ms_per_step == pytest.approx(1000 * sample.seconds / 3)
    row = rows["k"]
    assert row.warmup_peak_mb is not None and row.warmup_peak_mb >= row.warmup_delta_mb >= 0
    no_warmup = step_arm("n", "label", lambda b: None, [], [], batches, CPU, rows)
    assert no_warmup.warmup is None


def test_amortised_speed_per_round_and_tracked_ratios_per_round():
    assert amortised_speed(1000, 3, 0.0, 50.0) == pytest.approx(50.0)
    # 3000 samples at 100/s = 30 s, plus 10 s of cache build -> 75 samples/s
    assert amortised_speed(1000, 3, 10.0, 100.0) == pytest.approx(75.0)
    cache = Row("cache_build", "cache", [Sample(10.0, 1000), Sample(30.0, 1000)])
    cached = Row("kd_cache", "kd", [Sample(10.0, 1000, 10), Sample(20.0, 1000, 10)])  # 100 then 50 samples/s
    amortised = amortised_row("a", "a", 1000, 3, cache, cached)
    assert [s.samples_per_s for s in amortised.samples] == pytest.approx([75.0, 3000 / 90])
    once = Row("cache_build", "cache", [Sample(10.0, 1000)])  # built once: used with every round's speed
    amortised = amortised_row("a", "a", 1000, 3, once, cached)
    assert [s.samples_per_s for s in amortised.samples] == pytest.approx([75.0, 3000 / 70])

    def row(key: str, ms: list[float]) -> Row:
        return Row(key, key, [Sample(m / 1000 * 10, 320, 10) for m in ms])

    rows = {
        "teacher_fwd": row("teacher_fwd", [50, 100, 60]),
        "student_ce": row("student_ce", [200, 400, 240]),
        "kd_cache": row("kd_cache", [204, 408, 300]),  # 1.02, 1.02, 1.25
        "kd_nocache": row("kd_nocache", [260, 520, 300]),
        "mix_hooks": row("mix_hooks", [300, 600, 330]),
        "mix_eager": row("mix_eager", [310, 590, 340]),
    }
    floors = {f.name.split(" / ")[0]: f for f in tracked_ratios(SimpleNamespace(rows=rows, settings=CPU))}
    kd_cache = floors["cached logit-KD step"]
    assert kd_cache.values == pytest.approx([1.02, 1.02, 1.25]) and kd_cache.verdict == "PASS" and kd_cache.agreed == 2
    no_cache = floors["logit-KD step without cache"]
    assert no_cache.values == pytest.approx([260 / 250, 520 / 500, 1.0]) and no_cache.verdict == "PASS"
    hooks = [f for f in floors.values() if "eager-fed" in f.name][0]
    assert hooks.op == "<=" and hooks.bound == 1.0 and hooks.agreed == 2 and hooks.verdict == "PASS"
    e2e = [f for f in floors.values() if "HF Trainer" in f.name][0]
    assert e2e.values == [] and e2e.verdict == "n/a"  # no end-to-end rows measured


def test_cpu_timer_and_bad_flags_reported_together(capsys):
    settings = Settings(torch.device("cpu"), timer="cpu")
    start = settings.now()
    sum(i * i for i in range(200_000))  # burn some CPU
    assert settings.now() > start
    with pytest.raises(SystemExit):
        throughput.parse_args(["--rounds", "0", "--round-warmup", "-1", "--steps", "0"])
    err = capsys.readouterr().err
    assert "--rounds=0: expected an integer >= 1" in err and "--round-warmup=-1" in err and "--steps=0" in err


def test_memory_meter_sees_a_cpu_allocation():
    meter = MemoryMeter(torch.device("cpu"))
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
    args += ["--rounds", "2", "--round-warmup", "1", "--cache-every-round"]
    args += ["--threads", "1", "--json", str(tmp_path / "out.json")]  # 1 thread: quick even on a busy machine
    threads = torch.get_num_threads()
    try:
        report = throughput.main(args)
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
    assert keys[9:] == ["mix_attn", "mix_eager", "pl_kd_cache", "pl_kd_cache_amort3", "hf_recipe"]
    rows = {r.key: r for r in report["rows"]}
    accelerate = importlib.util.find_spec("accelerate") is not None
    measured = [k for k, r in rows.items() if r.samples]
    assert measured == [k for k in keys if accelerate or k != "hf_recipe"]
    assert all(len(r.samples) == 2 for k, r in rows.items() if k in measured)  # two rounds each
    steps = {k: r for k, r in rows.items() if r.samples and r.samples[0].steps}
    assert all(s.steps == 2 and s.samples == 16 for r in steps.values() for s in r.samples)
    assert "WARNING" not in rows["pl_kd_cache"].note
    assert [len(f.values) for f in report["floors"]] == [2 if accelerate else 0, 2, 2, 2, 2, 2]
    out = capsys.readouterr().out
    assert "| config | samples/s, median (min–max) | ms/step, median (min–max) |" in out
    assert out.count(": PASS") + out.count(": FAIL") + out.count(": n/a") == 6
    payload = json.loads((tmp_path / "out.json").read_text())
    assert len(payload["floors"]) == 6 and all(
        len(f["per_round"]) == len(f_.values) for f, f_ in zip(payload["floors"], report["floors"], strict=True)
    )
    assert len(payload["rows"][1]["rounds"]) == 2
