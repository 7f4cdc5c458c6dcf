"""The samples/s callback counts the rows of the collator's batches (a ``BatchEncoding``, not a ``dict``)."""

from __future__ import annotations

import torch
from transformers import BatchEncoding

from helper.step_rate import StepRate


def test_counts_rows_of_batch_encodings():
    rate = StepRate()
    for size in (5, 3):
        rate.on_train_batch_start(None, None, None, 0)
        rate.on_train_batch_end(None, None, None, BatchEncoding({"labels": torch.zeros(size)}), 0)
    assert (rate.steps, rate.samples) == (2, 8) and rate.seconds > 0
    assert "2 steps, 8 samples" in rate.summary() and "samples/s" in rate.summary()
