"""Rebalancing of the transfer set on the teacher's predicted classes (``data.balance``).

Unlabelled in-domain text is rarely spread over the classes like the labelled data: on the 44,507 unlabelled tweets
of ``../shared/data/tweets_unlabeled`` the fine-tuned TweetEval teacher's top class is joy for 85 % of them and
optimism for 2 %, so a student distilled on them sees the rare classes' soft targets far less often than the
labelled data would suggest. Noisy Student (Xie et al., 2020, arXiv:1911.04252, Sec. 3) balances its
pseudo-labelled images by duplicating those of the classes that have too few; here each transfer row is repeated
according to how rare its teacher's top class is among the transfer rows:

    repeats(c) = min(max_repeats, max(1, round((n_max / n_c) ** power)))     (rounded half up)

where ``n_c`` is the number of transfer rows whose teacher top class is ``c`` and ``n_max`` that of the most common
class. ``power`` 1 balances the classes fully (up to ``max_repeats``), smaller powers part of the way. The labelled
rows are never repeated; the repeats are known once the teacher has labelled the transfer rows, before training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from data.sources import is_int, is_number, settings_problems

#: What ``power`` and ``max_repeats`` accept.
POWER_RANGE = "a number in (0, 1]"


@dataclass
class Balance:
    """Repeat transfer rows of rare teacher classes (``data.balance``; single-label classification only).

    Attributes:
        power: How far towards equal classes, in (0, 1]: each row of a class with ``n_c`` transfer rows is repeated
            ``round((n_max / n_c) ** power)`` times (1: fully balanced; 0.5: the square root of the imbalance).
        max_repeats: The most times one transfer row appears (>= 1).
    """

    power: float = 0.5
    max_repeats: int = 8


def balance_problems(balance: Balance, field: str = "balance") -> list[str]:
    """Every out-of-range or mistyped value of a :class:`Balance` (an empty list when it is fine)."""
    power, repeats = balance.power, balance.max_repeats
    checks = (
        ("power", is_number(power) and 0 < power <= 1, POWER_RANGE),
        ("max_repeats", is_int(repeats) and repeats >= 1, "an integer >= 1"),
    )
    return settings_problems(balance, checks, field)


def class_repeats(top: Sequence[int], num_labels: int, balance: Balance) -> tuple[list[int], list[int]]:
    """How many rows each class has among the transfer rows and how many times each of its rows appears.

    Args:
        top: The teacher's top class of every transfer row.
        num_labels: The number of classes.
        balance: The settings.

    Returns:
        ``(counts, repeats)``, one entry per class; a class no row has gets 0 repeats.
    """
    counts = [0] * num_labels
    for c in top:
        counts[c] += 1
    most = max(counts, default=0)
    # rounded half up (Python's round() takes 4.5 to 4)
    repeats = [
        0 if n == 0 else min(balance.max_repeats, max(1, math.floor((most / n) ** balance.power + 0.5))) for n in counts
    ]
    return counts, repeats


def balanced_indices(labeled: int, top: Sequence[int], repeats: Sequence[int]) -> list[int]:
    """Row indices of the balanced training split: every labelled row once, then each transfer row ``repeats`` times.

    Args:
        labeled: How many labelled rows come first in the training split.
        top: The teacher's top class of every transfer row (the rows after the labelled ones, in order).
        repeats: Repeats per class (:func:`class_repeats`).
    """
    return [*range(labeled), *(labeled + i for i, c in enumerate(top) for _ in range(repeats[c]))]


def describe_balance(counts: Sequence[int], repeats: Sequence[int], names: Sequence[str]) -> str:
    """One log line: the teacher's top classes over the transfer rows, their repeats and the rows that result."""
    parts = [f"{name} {n:,} x{r}" for name, n, r in zip(names, counts, repeats, strict=True)]
    total = sum(n * r for n, r in zip(counts, repeats, strict=True))
    return (
        f"balance: the teacher's top class over {sum(counts):,} transfer rows: {', '.join(parts)} "
        f"-> {total:,} transfer rows"
    )
