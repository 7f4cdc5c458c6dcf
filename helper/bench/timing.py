"""Timing: interleaved batch-1 latency rounds and their statistics, and one timed throughput pass.

Timed code runs under ``torch.inference_mode()`` with the garbage collector paused (collected once before), on
``time.perf_counter``; with a CUDA device every timed call is synchronised. The run fixes ``torch.set_num_threads``.

* Latency: batch size 1, no padding, on the examples nearest the median token count (the same for every model). All
  models are loaded first and timed in interleaved rounds (A B C ... A B C ...), so that a machine whose speed drifts
  over minutes slows every model alike: ``warmup`` untimed calls per model first, then in each round each model in
  turn makes one untimed call (its weights back in cache) and one timed call per latency example. Reported: the median
  of the round medians (with their min-max), mean and standard deviation over all timed calls, and the latency ratio
  to a reference model per round: its median, min-max, and how many rounds agree with the median.
* Throughput: the whole split, longest examples first, padded per batch beforehand (or tokenized inside the timed
  region when tokenization is timed); one untimed warm-up batch when ``warmup > 0``; samples per second of model time.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from helper.bench.data import EvalData
from helper.bench.models import Runner


@contextmanager
def _timing_conditions() -> Any:
    """``inference_mode`` and a paused garbage collector (collected once before)."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        with torch.inference_mode():
            yield
    finally:
        if was_enabled:
            gc.enable()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_rounds(
    calls: Sequence[Sequence[Callable[[], Any]]], rounds: int, warmup: int, device: torch.device
) -> list[list[list[float]]]:
    """Time several models in interleaved rounds (A B C ... A B C ...) on the same inputs.

    ``calls[m]`` holds model ``m``'s batch-1 calls, one per latency example. First ``warmup`` untimed calls per model;
    then, in each round, each model in turn makes one untimed call (when ``warmup > 0``: its weights back in cache
    after the other models ran) and every one of its calls once, timed.

    Returns:
        Milliseconds per timed call, indexed ``[model][round][call]``.
    """
    times: list[list[list[float]]] = [[] for _ in calls]
    with _timing_conditions():
        for model_calls in calls:
            for i in range(warmup):
                model_calls[i % len(model_calls)]()
        _sync(device)
        for _ in range(rounds):
            for m, model_calls in enumerate(calls):
                if warmup > 0:
                    model_calls[0]()
                    _sync(device)
                round_times = []
                for call in model_calls:
                    start = time.perf_counter()
                    call()
                    _sync(device)
                    round_times.append((time.perf_counter() - start) * 1000.0)
                times[m].append(round_times)
    return times


def latency_stats(times: Sequence[Sequence[Sequence[float]]], reference: int = 0) -> list[dict[str, Any]]:
    """Per-model latency figures from :func:`time_rounds`' output, and ratios to model ``reference`` per round.

    Returns:
        One dict per model: ``latency_ms_median`` (median of the round medians), ``latency_ms_round_min`` /
        ``_round_max`` (their spread), ``latency_ms_rounds`` (the round medians), ``latency_ms_mean`` and
        ``latency_ms_std`` (over all timed calls), ``latency_ratio`` (median over rounds of this model's round median
        divided by the reference's), ``latency_ratio_min`` / ``_max`` and ``latency_ratio_agree`` (rounds whose
        ratio is on the same side of 1 as the median ratio; all rounds when the median is exactly 1).
    """
    medians = [[statistics.median(r) for r in model] for model in times]
    out = []
    for model, model_medians in zip(times, medians, strict=True):
        flat = [t for r in model for t in r]
        ratios = [a / b if b > 0 else math.inf for a, b in zip(model_medians, medians[reference], strict=True)]
        ratio = statistics.median(ratios)
        if ratio > 1:
            agree = sum(r > 1 for r in ratios)
        elif ratio < 1:
            agree = sum(r < 1 for r in ratios)
        else:
            agree = len(ratios)
        out.append(
            {
                "latency_ms_median": statistics.median(model_medians),
                "latency_ms_round_min": min(model_medians),
                "latency_ms_round_max": max(model_medians),
                "latency_ms_mean": statistics.fmean(flat),
                "latency_ms_std": statistics.stdev(flat) if len(flat) > 1 else 0.0,
                "latency_ratio": ratio,
                "latency_ratio_min": min(ratios),
                "latency_ratio_max": max(ratios),
                "latency_ratio_agree": agree,
                "latency_rounds": len(model_medians),
                "latency_ms_rounds": [round(m, 4) for m in model_medians],
            }
        )
    return out


def measure_throughput(
    forward: Callable[[int], torch.Tensor], num_batches: int, warmup: bool, device: torch.device
) -> tuple[float, list[torch.Tensor]]:
    """Seconds to run ``forward(0..num_batches-1)`` once (after one untimed call when ``warmup``), and its logits."""
    outputs = []
    with _timing_conditions():
        if warmup and num_batches:
            forward(0)
        _sync(device)
        start = time.perf_counter()
        for b in range(num_batches):
            outputs.append(forward(b))
        _sync(device)
        seconds = time.perf_counter() - start
    return seconds, outputs


def latency_calls(
    runner: Runner,
    data: EvalData,
    encoded: dict[str, list[list[int]]],
    latency_idx: Sequence[int],
    include_tok: bool,
) -> list[Callable[[], torch.Tensor]]:
    """One batch-1 call per latency example (inputs prepared beforehand unless tokenization is timed)."""
    tok = runner.spec.tokenizer
    tok_kwargs = {"truncation": True, "max_length": data.max_length, "return_tensors": "pt"}
    if include_tok:

        def one(i: int) -> Callable[[], torch.Tensor]:
            def call() -> torch.Tensor:
                return runner.run(runner.prepare(dict(tok(*data.example(i), **tok_kwargs))))

            return call
    else:
        singles = {i: runner.prepare({k: torch.tensor([encoded[k][i]]) for k in runner.keys}) for i in latency_idx}

        def one(i: int) -> Callable[[], torch.Tensor]:
            return lambda: runner.run(singles[i])

    return [one(i) for i in latency_idx]
