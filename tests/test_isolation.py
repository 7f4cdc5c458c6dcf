"""The tests write only into their temporary folders: the caches of this process and of the subprocesses the tests
start point into the session's temporary folder (``conftest.py``, ``tests.tiny.subprocess_env``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


def test_a_subprocess_caches_its_data_in_the_session_folder(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """A CSV loaded in a subprocess started with ``subprocess_env()`` caches its Arrow files under the session's
    temporary folder, and so does one loaded here."""
    from data.sources import load_source

    (tmp_path / "train.csv").write_text("text,label\na,0\nb,1\n")
    here = load_source(str(tmp_path / "train.csv"))["train"].cache_files
    code = (
        "import json, sys; from data.sources import load_source; "
        "print(json.dumps(load_source(sys.argv[1])['train'].cache_files))"
    )
    cwd = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "train.csv")],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    there = json.loads(done.stdout.strip().splitlines()[-1])
    base = tmp_path_factory.getbasetemp()
    assert here and there
    for entry in [*here, *there]:
        assert _inside(entry["filename"], base), entry["filename"]
    assert not _inside(os.environ["HF_DATASETS_CACHE"], Path.home() / ".cache")
