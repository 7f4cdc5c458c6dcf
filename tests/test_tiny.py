"""The test helpers themselves: a missing ``../shared/data`` folder skips a test, and fails it under ``CI=true``."""

from __future__ import annotations

import pytest

from tests.tiny import shared_data

MISSING = "no-such-data-set-for-the-test"


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_missing_shared_data(ci: str, outcome: type[BaseException], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match=MISSING):
        shared_data(MISSING)


def test_present_shared_data_is_its_folder() -> None:
    path = shared_data("sst2")  # skipped (outside CI) or failed (in CI) when ../shared is absent
    assert path.is_dir() and path.name == "sst2"
