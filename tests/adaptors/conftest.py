"""Fixtures of the adaptor tests: eager tiny models (built once per session) and taps of a padded batch."""

from __future__ import annotations

import pytest
import torch
from transformers import BertForSequenceClassification

from adaptors import ModelDims
from tests.adaptors.helpers import STUDENT_LAYERS, TEACHER_LAYERS, Run, dims, eager_bert, make_batch, run_model
from tests.tiny import single_thread


@pytest.fixture(scope="package", autouse=True)
def _single_thread():
    """Run the adaptor tests single-threaded, restoring the setting afterwards.

    The tensors here are tiny: with several intra-op threads on a busy 2-core machine each op can wait milliseconds
    for a thread, making the suite 50x slower than on one thread.
    """
    with single_thread():
        yield


@pytest.fixture(scope="session")
def teacher_model() -> BertForSequenceClassification:
    """Teacher: 4 layers, width 64, 4 heads."""
    return eager_bert(layers=4, hidden=64, heads=4, seed=0)


@pytest.fixture(scope="session")
def student_model() -> BertForSequenceClassification:
    """Narrow student with fewer heads: 2 layers, width 32, 2 heads."""
    return eager_bert(layers=2, hidden=32, heads=2, seed=1)


@pytest.fixture(scope="session")
def student4_model() -> BertForSequenceClassification:
    """Narrow student with the teacher's head count: 2 layers, width 32, 4 heads (d_head 8 vs 16)."""
    return eager_bert(layers=2, hidden=32, heads=4, seed=2)


@pytest.fixture(scope="session")
def wide_student_model() -> BertForSequenceClassification:
    """Student with the teacher's width and heads (no projection needed): 2 layers, width 64, 4 heads."""
    return eager_bert(layers=2, hidden=64, heads=4, seed=3)


@pytest.fixture(scope="session")
def batch() -> dict[str, torch.Tensor]:
    """Three right-padded examples of lengths 7, 4 and 10."""
    return make_batch([7, 4, 10])


@pytest.fixture(scope="session")
def teacher_run(teacher_model, batch) -> Run:
    with torch.no_grad():
        return run_model(teacher_model, batch, TEACHER_LAYERS)


@pytest.fixture(scope="session")
def student_run(student_model, batch) -> Run:
    with torch.no_grad():
        return run_model(student_model, batch, STUDENT_LAYERS)


@pytest.fixture(scope="session")
def student4_run(student4_model, batch) -> Run:
    with torch.no_grad():
        return run_model(student4_model, batch, STUDENT_LAYERS)


@pytest.fixture(scope="session")
def wide_student_run(wide_student_model, batch) -> Run:
    with torch.no_grad():
        return run_model(wide_student_model, batch, STUDENT_LAYERS)


@pytest.fixture(scope="session")
def t_dims(teacher_model) -> ModelDims:
    return dims(teacher_model)


@pytest.fixture(scope="session")
def s_dims(student_model) -> ModelDims:
    return dims(student_model)


@pytest.fixture(scope="session")
def s4_dims(student4_model) -> ModelDims:
    return dims(student4_model)


@pytest.fixture(scope="session")
def wide_dims(wide_student_model) -> ModelDims:
    return dims(wide_student_model)
