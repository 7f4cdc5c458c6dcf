"""Interleaved timing: configurations measured in alternating rounds, figures and ratios summarised over rounds.

On a machine whose speed drifts (a shared virtual machine, thermal or frequency changes, other jobs), timing
configuration A for a minute and then configuration B for a minute compares A's code *and* the first minute's machine
with B's code *and* the second minute's machine. Interleaving runs A B C … A B C …: every round measures each
configuration once, close together in time, so a ratio computed *within* a round compares the code under (nearly) the
same machine state, and the rounds show how much the machine moved.

This module holds the machinery without anything model-specific, so that it can be tested with fake timers:

* :class:`Arm`: one configuration: an optional one-time warm-up and a ``measure()`` that runs one round's timed
  work and returns a :class:`Sample`.
* :func:`run_rounds`: warm every arm up (in order), then ``rounds`` rounds of ``arm.measure()`` in the arms' order.
* :class:`Spread`: median, min–max and interquartile range of per-round values.
* :class:`Floor`: a tracked ratio, computed per round, with a bound it must respect. It passes only when the *median*
  of its per-round values respects the bound; :attr:`Floor.agreed` counts the rounds that did.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["Arm", "Floor", "Sample", "Spread", "per_round", "run_rounds", "time_loop"]

Clock = Callable[[], float]


@dataclass
class Sample:
    """One arm's measurement in one round.

    Attributes:
        seconds: Length of the timed window.
        samples: Examples processed in the window.
        steps: Optimizer steps (or forward passes) in the window; 0 where a per-step time makes no sense.
        peak_mb: Peak memory during the round's segment, or None.
        delta_mb: Peak memory above the segment's start, or None.
        padded_length: Mean padded sequence length of the timed batches, or None.
        rate: A derived samples/s (e.g. amortised over epochs) that replaces ``samples / seconds``.
    """

    seconds: float
    samples: float
    steps: int = 0
    peak_mb: float | None = None
    delta_mb: float | None = None
    padded_length: float | None = None
    rate: float | None = None

    @property
    def samples_per_s(self) -> float:
        """Throughput over the window (or the derived ``rate``); NaN when nothing was timed."""
        if self.rate is not None:
            return self.rate
        return self.samples / self.seconds if self.seconds > 0 else float("nan")

    @property
    def ms_per_step(self) -> float | None:
        """Mean wall time of one step in milliseconds, or None for a window without steps."""
        return 1000 * self.seconds / self.steps if self.steps else None


@dataclass
class Arm:
    """One configuration of an interleaved measurement.

    Attributes:
        key: Short identifier (ratios and JSON refer to it).
        label: Human-readable description (the table's first column).
        measure: Runs one round's timed work and returns its :class:`Sample`.
        warmup: Untimed work run once before the first round (e.g. the first optimizer steps, which allocate the
            optimizer state), or None.
    """

    key: str
    label: str
    measure: Callable[[], Sample]
    warmup: Callable[[], None] | None = None


def run_rounds(
    arms: Sequence[Arm], rounds: int, progress: Callable[[str], None] | None = None
) -> dict[str, list[Sample]]:
    """Warm each arm up once, then measure the arms in ``rounds`` alternating rounds (A B C … A B C …).

    Args:
        arms: The configurations, in the order each round runs them. Keys must be unique.
        rounds: Number of rounds (>= 1).
        progress: Called with a one-line message after each measurement (e.g. ``print`` to stderr), or None.

    Returns:
        ``{arm.key: [round 1 sample, round 2 sample, ...]}``, in the arms' order.

    Raises:
        ValueError: On ``rounds < 1`` or duplicate keys.
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds={rounds!r}: expected an integer >= 1")
    keys = [arm.key for arm in arms]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"arm keys must be unique; repeated: {duplicates}")
    for arm in arms:
        if arm.warmup is not None:
            arm.warmup()
            if progress is not None:
                progress(f"[warm-up] {arm.key}")
    out: dict[str, list[Sample]] = {key: [] for key in keys}
    for index in range(rounds):
        for arm in arms:
            sample = arm.measure()
            out[arm.key].append(sample)
            if progress is not None:
                shown = f"{sample.ms_per_step:.1f} ms/step" if sample.ms_per_step else f"{sample.seconds:.2f} s"
                progress(f"[round {index + 1}/{rounds}] {arm.key}: {sample.samples_per_s:.1f} samples/s, {shown}")
    return out


def stderr_progress(message: str) -> None:
    """Progress printer for :func:`run_rounds`: one flushed line on stderr."""
    print(message, file=sys.stderr, flush=True)


def time_loop(
    step: Callable[[object], object],
    batches: Sequence[object],
    clock: Clock = time.perf_counter,
    sync: Callable[[], None] | None = None,
) -> float:
    """Seconds ``step`` takes over ``batches``, measured by ``clock`` (synchronised at both ends by ``sync``)."""
    if sync is not None:
        sync()
    start = clock()
    for batch in batches:
        step(batch)
    if sync is not None:
        sync()
    return clock() - start


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and not math.isnan(v)]


@dataclass(frozen=True)
class Spread:
    """Median and spread of per-round values.

    Attributes:
        values: The per-round values (None / NaN entries dropped).
    """

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Spread:
        """The spread of the finite values among ``values``."""
        return cls(tuple(_finite(values)))

    @property
    def n(self) -> int:
        """Number of values."""
        return len(self.values)

    @property
    def median(self) -> float | None:
        """Median, or None without values."""
        return statistics.median(self.values) if self.values else None

    @property
    def low(self) -> float | None:
        """Minimum, or None."""
        return min(self.values) if self.values else None

    @property
    def high(self) -> float | None:
        """Maximum, or None."""
        return max(self.values) if self.values else None

    @property
    def iqr(self) -> tuple[float, float] | None:
        """First and third quartiles (``statistics.quantiles``, inclusive method), or None with fewer than 2 values."""
        if len(self.values) < 2:
            return None
        q1, _, q3 = statistics.quantiles(self.values, n=4, method="inclusive")
        return q1, q3

    def text(self, digits: int = 1) -> str:
        """``median (min–max)``, or ``—`` without values."""
        if not self.values:
            return "—"
        if len(self.values) == 1:
            return f"{self.median:,.{digits}f}"
        return f"{self.median:,.{digits}f} ({self.low:,.{digits}f}–{self.high:,.{digits}f})"


@dataclass
class Floor:
    """A tracked ratio, computed in each round, and the bound its median must respect.

    Attributes:
        name: What the ratio compares.
        op: ``">="`` or ``"<="``.
        bound: The floor (or ceiling).
        values: The ratio in each round (None where an input of that round is missing).
        note: Extra information printed with the line.
    """

    name: str
    op: str
    bound: float
    values: list[float | None] = field(default_factory=list)
    note: str = ""

    def __post_init__(self) -> None:
        if self.op not in (">=", "<="):
            raise ValueError(f"Floor {self.name!r}: op={self.op!r}, expected '>=' or '<='")

    def holds(self, value: float) -> bool:
        """Whether one value respects the bound."""
        return value >= self.bound if self.op == ">=" else value <= self.bound

    @property
    def spread(self) -> Spread:
        """Median and spread of the per-round ratios."""
        return Spread.of(self.values)

    @property
    def value(self) -> float | None:
        """The median ratio (None when no round measured it)."""
        return self.spread.median

    @property
    def agreed(self) -> int:
        """How many rounds' ratios respect the bound on their own."""
        return sum(self.holds(v) for v in self.spread.values)

    @property
    def verdict(self) -> str:
        """``PASS`` when the median respects the bound, ``FAIL`` when not, ``n/a`` when nothing was measured."""
        median = self.value
        if median is None:
            return "n/a"
        return "PASS" if self.holds(median) else "FAIL"

    def line(self) -> str:
        """One printed line: ``name = median (min–max over n rounds) (floor op bound): verdict, k/n rounds agree``."""
        symbol = "≥" if self.op == ">=" else "≤"
        spread = self.spread
        if spread.median is None:
            return f"- {self.name} = n/a (floor {symbol} {self.bound:g}): n/a"
        shown = f"{spread.median:.3f}"
        if spread.n > 1:
            shown += f" (rounds {spread.low:.3f}–{spread.high:.3f})"
        extra = f"; {self.note}" if self.note else ""
        return (
            f"- {self.name} = {shown} (floor {symbol} {self.bound:g}): {self.verdict}, "
            f"{self.agreed}/{spread.n} rounds agree{extra}"
        )


def per_round(fn: Callable[..., float | None], *series: Sequence[float | None]) -> list[float | None]:
    """Apply ``fn`` round by round to aligned per-round series; a round with a missing input gives None.

    Example:
        ``per_round(lambda a, b: a / b, kd_ms, student_ms)`` is the per-round ratio of two arms' step times.
    """
    lengths = {len(s) for s in series}
    if len(lengths) > 1:
        raise ValueError(f"per-round series differ in length: {sorted(lengths)}")
    out: list[float | None] = []
    for values in zip(*series, strict=True):
        if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
            out.append(None)
            continue
        try:
            out.append(fn(*values))
        except ZeroDivisionError:
            out.append(None)
    return out
