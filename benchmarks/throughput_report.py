"""Rows of the throughput table (per-round samples, amortised speeds) and the report: Markdown and JSON."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks.interleave import Sample, Spread, per_round


@dataclass
class Row:
    """One row of the table: a configuration's per-round samples, or a figure derived from other rows per round.

    Attributes:
        key: Short identifier used by the ratios and the JSON output.
        label: The config column.
        samples: One :class:`~benchmarks.interleave.Sample` per round (empty for a skipped row).
        note: Extra information printed under the table.
        warmup_peak_mb: Peak memory of the one-time warm-up segment (it allocates the optimizer state), or None.
        warmup_delta_mb: That segment's peak above its start, or None.
    """

    key: str
    label: str
    samples: list[Sample] = field(default_factory=list)
    note: str = ""
    warmup_peak_mb: float | None = None
    warmup_delta_mb: float | None = None

    @property
    def speed(self) -> Spread:
        """Samples/s over the rounds."""
        return Spread.of([s.samples_per_s for s in self.samples])

    @property
    def ms(self) -> Spread:
        """Milliseconds per step over the rounds (empty for rows without steps)."""
        return Spread.of([s.ms_per_step for s in self.samples])

    def per_round_speed(self) -> list[float | None]:
        """Samples/s of each round."""
        return [s.samples_per_s for s in self.samples]

    def per_round_ms(self) -> list[float | None]:
        """Milliseconds per step of each round."""
        return [s.ms_per_step for s in self.samples]

    def _max(self, values: list[float | None]) -> float | None:
        finite = [v for v in values if v is not None]
        return max(finite) if finite else None

    @property
    def peak_mb(self) -> float | None:
        """Highest peak memory over the warm-up and every round's segment."""
        return self._max([self.warmup_peak_mb, *(s.peak_mb for s in self.samples)])

    @property
    def delta_mb(self) -> float | None:
        """Largest excess of a segment's peak over the segment's start (the warm-up includes the optimizer state)."""
        return self._max([self.warmup_delta_mb, *(s.delta_mb for s in self.samples)])

    @property
    def padded_length(self) -> float | None:
        """Mean padded sequence length of the timed batches (over the rounds), or None."""
        lengths = [s.padded_length for s in self.samples if s.padded_length is not None]
        return sum(lengths) / len(lengths) if lengths else None


def amortised_speed(num_samples: int, epochs: float, cache_seconds: float, cached_speed: float) -> float:
    """Samples/s over ``epochs`` passes when a one-time cache build precedes training.

    Args:
        num_samples: Training examples per epoch (``N``).
        epochs: Passes over the data (``k``).
        cache_seconds: One-time cost of building the teacher-logit cache.
        cached_speed: Training samples/s once the cache exists.

    Returns:
        ``k·N / (cache_seconds + k·N / cached_speed)``.
    """
    work = epochs * num_samples
    return work / (cache_seconds + work / cached_speed)


def amortised_row(key: str, label: str, num_samples: int, epochs: float, cache: Row, cached: Row) -> Row:
    """Per round, the amortised speed from that round's cache build and that round's cached training speed.

    A cache built once (one sample) is used with every round's speed.
    """
    builds = [s.seconds for s in cache.samples]
    if len(builds) == 1:
        builds = builds * len(cached.samples)
    rates = per_round(
        lambda seconds, speed: amortised_speed(num_samples, epochs, seconds, speed), builds, cached.per_round_speed()
    )
    return Row(key, label, [Sample(0.0, 0, rate=float("nan") if r is None else r) for r in rates])


def _fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None or value != value else f"{value:,.{digits}f}"


def format_report(report: dict[str, Any]) -> str:
    """The header, the Markdown table (medians over rounds, min–max in brackets), notes and the ratio lines."""
    lines = [f"# Training throughput, interleaved rounds ({time.strftime('%Y-%m-%d %H:%M')})", ""]
    lines += [f"- {k}: {v}" for k, v in report["header"].items()]
    lines += [
        "",
        "| config | samples/s, median (min–max) | ms/step, median (min–max) | peak mem MB | Δ mem MB |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        if r.key == "cache_build":
            seconds = Spread.of([s.seconds for s in r.samples])
            speed = f"{seconds.text(2)} s" if r.samples else "skipped"
            lines.append(f"| {r.label} | {speed} | — | {_fmt(r.peak_mb, 0)} | {_fmt(r.delta_mb, 0)} |")
            continue
        speed = r.speed.text() if r.samples else "skipped"
        lines.append(f"| {r.label} | {speed} | {r.ms.text()} | {_fmt(r.peak_mb, 0)} | {_fmt(r.delta_mb, 0)} |")
    lines += [
        "",
        f"Memory: {report['memory']}, highest over the one-time warm-up and every round (peak), and the largest excess "
        "of a segment's peak over its start (Δ), MiB.",
        "Step rows: identical pre-collated batches on the device, plain Python loop, every configuration once per "
        "round (A B C … A B C …); end-to-end rows include data loading and each framework's loop.",
    ]
    for r in report["rows"]:
        extra = (
            [f"mean padded length {r.padded_length:.1f}"]
            if r.padded_length and r.key.startswith(("pl_", "hf_"))
            else []
        )
        if r.note:
            extra.append(r.note)
        if extra:
            lines.append(f"- {r.key}: {'; '.join(extra)}")
    lines += ["", "Ratios (computed in each round; median over rounds, min–max, and how many rounds hold the floor):"]
    lines += [f.line() for f in report["floors"]]
    return "\n".join(lines)


def _json_row(row: Row) -> dict[str, Any]:
    def clean(value: float | None) -> float | None:
        return None if value is None or value != value else value

    return {
        "key": row.key,
        "label": row.label,
        "note": row.note,
        "samples_per_s": {"median": row.speed.median, "min": row.speed.low, "max": row.speed.high},
        "ms_per_step": {"median": row.ms.median, "min": row.ms.low, "max": row.ms.high},
        "peak_mb": row.peak_mb,
        "delta_mb": row.delta_mb,
        "rounds": [
            {**asdict(s), "samples_per_s": clean(s.samples_per_s), "ms_per_step": s.ms_per_step} for s in row.samples
        ],
    }


def json_payload(report: dict[str, Any]) -> dict[str, Any]:
    """The report as JSON-ready data: the header, the memory kind, the rows and the floors with their rounds."""
    return {
        "header": report["header"],
        "memory": report["memory"],
        "rows": [_json_row(r) for r in report["rows"]],
        "floors": [
            {
                "name": f.name,
                "op": f.op,
                "bound": f.bound,
                "per_round": f.values,
                "median": f.value,
                "min": f.spread.low,
                "max": f.spread.high,
                "rounds_agreeing": f.agreed,
                "rounds": f.spread.n,
                "verdict": f.verdict,
            }
            for f in report["floors"]
        ],
    }
