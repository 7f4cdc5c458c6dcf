"""Peak memory of a measured segment: the CUDA allocator's peak, or the process's peak resident set size on CPU.

On CUDA, ``torch.cuda.max_memory_allocated`` since the segment's start and its excess over the allocation at the start.
On CPU, the process's peak RSS during the segment (Linux ``VmHWM`` after resetting it via ``/proc/self/clear_refs``;
elsewhere the lifetime ``ru_maxrss``) and its excess over the RSS at the segment's start; freed heap is returned to the
OS first (``malloc_trim``) so segments do not inherit each other's peaks.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import resource
import sys

import torch


def _status_kb(name: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), or None off Linux."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_rss_peak() -> bool:
    """Reset the kernel's peak-RSS counter (``VmHWM``) to the current RSS; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _malloc_trim() -> None:
    """Give freed heap memory back to the OS (glibc), so RSS reflects what is live; best effort."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _maxrss_mb() -> float:
    """Lifetime peak RSS of the process from ``getrusage`` (kB on Linux, bytes on macOS)."""
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value / (1024 * 1024) if sys.platform == "darwin" else value / 1024


class MemoryMeter:
    """Peak memory of one row: CUDA allocator peak, or the process's peak RSS on CPU (see the module docstring).

    Args:
        device: The row's device.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._hwm = device.type != "cuda" and os.access("/proc/self/clear_refs", os.W_OK)
        if device.type == "cuda":
            self.kind = "CUDA max_memory_allocated"
        else:
            self.kind = "peak process RSS (VmHWM)" if self._hwm else "lifetime peak process RSS (ru_maxrss)"
        self._baseline = 0.0

    def start(self) -> None:
        """Reset the peak counter and note the memory in use now."""
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self._baseline = torch.cuda.memory_allocated(self.device) / 2**20
            return
        _malloc_trim()
        if self._hwm and not (_reset_rss_peak() and _status_kb("VmHWM") is not None):
            self._hwm = False
            self.kind = "lifetime peak process RSS (ru_maxrss)"
        rss = _status_kb("VmRSS")
        self._baseline = rss / 1024 if rss is not None else _maxrss_mb()

    def stop(self) -> tuple[float, float]:
        """Peak memory since :meth:`start` and its excess over the memory in use at the start, both in MiB."""
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            hwm = _status_kb("VmHWM") if self._hwm else None
            peak = hwm / 1024 if hwm is not None else _maxrss_mb()
        return peak, max(peak - self._baseline, 0.0)
