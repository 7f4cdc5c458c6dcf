"""Fixtures shared by the data tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.tiny import single_thread


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models run ~10x faster on one thread than on threads contending with other jobs (``usefixtures``)."""
    with single_thread():
        yield
