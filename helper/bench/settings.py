"""The benchmark's error type and the checks of its numeric settings and device."""

from __future__ import annotations

from typing import Any

import torch

from common.errors import ProblemsError


class BenchmarkError(ProblemsError):
    """Bad benchmark input (settings, data or models): every problem found, listed in one message."""

    headline = "{n} problem(s) found before benchmarking; nothing was timed"


def _positive_int(name: str, value: Any, minimum: int = 1) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        return [f"{name}={value!r}: expected an integer >= {minimum}"]
    return []


def check_settings(
    threads: int | None,
    batch_size: int,
    latency_runs: int,
    warmup: int,
    max_samples: int | None,
    max_length: int,
    device: str,
    rounds: int = 5,
) -> list[str]:
    """Problems with the numeric settings and the device (an empty list when all are fine)."""
    problems = []
    problems += _positive_int("threads", threads)
    problems += _positive_int("rounds", rounds)
    problems += _positive_int("batch_size", batch_size)
    problems += _positive_int("latency_runs", latency_runs)
    problems += _positive_int("warmup", warmup, minimum=0)
    problems += _positive_int("max_samples", max_samples)
    problems += _positive_int("max_length", max_length)
    if device == "auto":
        return problems
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        return [*problems, f"device={device!r}: expected 'cpu', 'cuda', 'cuda:N' or 'auto'"]
    if dev.type not in ("cpu", "cuda"):
        problems.append(f"device={device!r}: expected 'cpu', 'cuda', 'cuda:N' or 'auto'")
    elif dev.type == "cuda" and not torch.cuda.is_available():
        problems.append(f"device={device!r}: CUDA is not available here; expected 'cpu' or 'auto'")
    return problems


def resolve_device(device: str) -> torch.device:
    """The device ``device`` names; ``"auto"`` is CUDA when available, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
