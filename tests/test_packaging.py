"""The project as a user runs it: every package is installed, and the benchmark scripts start the way the README
calls them (``python benchmarks/<script>.py``, which puts ``benchmarks/`` first on ``sys.path``)."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.tiny import REPO_ROOT, subprocess_env

BENCHMARK_SCRIPTS = ["finetune_teacher.py", "distill_compare.py", "throughput.py"]
TOP_PACKAGES = {"adaptors", "benchmarks", "common", "data", "helper"}


def _setup_packages() -> list[str]:
    """The ``packages=`` argument of ``setup.py``, evaluated the way setuptools would see it."""
    import setuptools

    tree = ast.parse((REPO_ROOT / "setup.py").read_text(encoding="utf-8"))
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    expr = next(k.value for k in call.keywords if k.arg == "packages")
    scope = {"find_packages": lambda **kw: setuptools.find_packages(str(REPO_ROOT), **kw)}
    return eval(compile(ast.Expression(expr), "setup.py", "eval"), scope)  # noqa: S307 (our own setup.py)


def test_setup_installs_every_package_folder():
    folders = {
        ".".join(p.parent.relative_to(REPO_ROOT).parts)
        for p in REPO_ROOT.rglob("__init__.py")
        if p.parent.relative_to(REPO_ROOT).parts[0] in TOP_PACKAGES
    }
    assert folders, "no package folders found"
    missing = folders - set(_setup_packages())
    assert not missing, f"setup.py does not install {sorted(missing)}"


def test_benchmark_folder_names_no_top_level_package():
    """``python benchmarks/x.py`` puts ``benchmarks/`` first on ``sys.path``: a module there named like a project
    package (``common.py`` once) hides that package from every import below it."""
    clashes = sorted(p.stem for p in (REPO_ROOT / "benchmarks").glob("*.py") if p.stem in TOP_PACKAGES)
    assert not clashes, f"benchmarks/ modules shadow project packages: {clashes}"


@pytest.mark.parametrize("script", BENCHMARK_SCRIPTS)
def test_benchmark_script_starts_as_documented(script: str):
    done = subprocess.run(
        [sys.executable, f"benchmarks/{script}", "--help"],
        cwd=REPO_ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
