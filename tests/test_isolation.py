"""The tests write only into their temporary folders: the caches of this process and of the subprocesses the tests
start point into the session's temporary folder (``conftest.py``, ``tests.tiny.subprocess_env``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiny import CACHE_VARIABLES, subprocess_env


def _inside(path: str | Path, root: Path) -> bool:
    return Path(path).resolve().is_relative_to(root.resolve())


def test_subprocess_env_is_read_when_called(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    base = tmp_path_factory.getbasetemp()
    env = subprocess_env(EXTRA="1")
    for name in CACHE_VARIABLES:
        assert _inside(env[name], base), (name, env[name])
    assert (env["HF_HUB_OFFLINE"], env["WANDB_MODE"], env["EXTRA"]) == ("1", "disabled", "1")
    monkeypatch.setenv("DISTILLER_CACHE", str(base / "moved"))
    assert subprocess_env()["DISTILLER_CACHE"] == str(base / "moved")  # not a copy taken earlier


def test_data_sets_are_cached_in_the_session_folder(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """A CSV loaded by the tests caches its Arrow files under the session's temporary folder, not ``~/.cache``
    (subprocesses get the same folder through ``subprocess_env()``, checked above)."""
    from data.sources import load_source

    (tmp_path / "train.csv").write_text("text,label\na,0\nb,1\n")
    cached = load_source(str(tmp_path / "train.csv"))["train"].cache_files
    assert cached
    for entry in cached:
        assert _inside(entry["filename"], tmp_path_factory.getbasetemp()), entry["filename"]
