"""The throughput benchmark's memory meter measures an allocation on every CPU path, the ``ru_maxrss`` fallback
included (where ``/proc/self/clear_refs`` cannot reset the peak)."""

from __future__ import annotations

import pytest
import torch

from benchmarks import memory_meter
from benchmarks.memory_meter import MemoryMeter

MIB = 2**20


def _measure_64_mib() -> tuple[MemoryMeter, float, float]:
    meter = MemoryMeter(torch.device("cpu"))
    meter.start()
    block = torch.ones(64 * MIB // 4)  # 64 MiB, touched
    peak, delta = meter.stop()
    assert block.sum().item() == 64 * MIB // 4  # alive until the meter stopped
    return meter, peak, delta


@pytest.mark.parametrize("path", ["default", "ru_maxrss fallback"])
def test_a_64_mib_allocation_shows_in_the_peak(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if path != "default":
        monkeypatch.setattr(memory_meter, "_reset_rss_peak", lambda: False)  # as where clear_refs is not writable
    meter, peak, delta = _measure_64_mib()
    if path != "default":
        assert meter.kind == "lifetime peak process RSS (ru_maxrss)"
    # the block is resident when the meter stops, so even a lifetime peak is at least the baseline plus most of it
    assert delta >= 48, (meter.kind, peak, delta)
    assert peak >= delta + 48
