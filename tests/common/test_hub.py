"""Tests for common.hub: offline detection and fast, explicit failure for Hub names without a network."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from common.hub import HubUnavailableError, hub_offline_reason, require_hub
from data.data_module import ClfDataModule
from data.sources import load_source
from helper.models import resolve_model_path

OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


@pytest.fixture
def online_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No offline flag set, so reachability is decided by connecting to ``HF_ENDPOINT``."""
    for var in OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


@pytest.fixture
def closed_port() -> int:
    """A local TCP port with nothing listening (connecting is refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A local TCP socket that accepts connections (``accept`` waits at most 2 s)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        sock.settimeout(2.0)
        yield sock


@pytest.fixture
def listening_port(listener: socket.socket) -> int:
    """The port of :func:`listener`."""
    return listener.getsockname()[1]


@pytest.mark.parametrize("var", OFFLINE_VARS)
@pytest.mark.parametrize("value", ["1", "true", "YES", " on "])
def test_offline_flags(online_env: pytest.MonkeyPatch, closed_port: int, var: str, value: str) -> None:
    online_env.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port}")
    online_env.setenv(var, value)
    reason = hub_offline_reason()
    assert reason is not None and var in reason


def test_false_flag_falls_through_to_the_network_check(online_env: pytest.MonkeyPatch, listening_port: int) -> None:
    online_env.setenv("HF_HUB_OFFLINE", "0")
    online_env.setenv("HF_ENDPOINT", f"http://127.0.0.1:{listening_port}")
    assert hub_offline_reason() is None


def test_unreachable_endpoint(online_env: pytest.MonkeyPatch, closed_port: int) -> None:
    online_env.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port}")
    start = time.perf_counter()
    reason = hub_offline_reason(timeout=2.0)
    assert time.perf_counter() - start < 3
    assert reason is not None and f"127.0.0.1:{closed_port}" in reason


def test_require_hub_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailableError) as info:
        require_hub("model", "org/name", "Use the folder X instead.")
    msg = str(info.value)
    assert "model 'org/name'" in msg and "HF_HUB_OFFLINE=1" in msg and msg.endswith("Use the folder X instead.")
    assert isinstance(info.value, OSError)


def test_require_hub_passes_when_reachable(online_env: pytest.MonkeyPatch, listener: socket.socket) -> None:
    online_env.setenv("HF_ENDPOINT", f"http://127.0.0.1:{listener.getsockname()[1]}")
    assert require_hub("model", "org/name", "unused") is None
    conn, _ = listener.accept()  # the check did connect to HF_ENDPOINT (socket.timeout if it never tried)
    conn.close()
    online_env.setenv("HF_HUB_OFFLINE", "1")  # the same endpoint with the offline flag: refused
    with pytest.raises(HubUnavailableError, match="HF_HUB_OFFLINE=1"):
        require_hub("model", "org/name", "unused")


def test_model_hub_name_offline_fails_fast_naming_alternatives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(HubUnavailableError) as info:
        resolve_model_path("some-org/not-cached-model-xyz")
    assert time.perf_counter() - start < 5
    msg = str(info.value)
    assert "'some-org/not-cached-model-xyz'" in msg and "'minilm'" in msg and "local model folder" in msg


def test_hub_names_fail_fast_without_offline_flag(online_env: pytest.MonkeyPatch, closed_port: int) -> None:
    online_env.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port}")
    start = time.perf_counter()
    with pytest.raises(HubUnavailableError, match="cannot connect"):
        resolve_model_path("some-org/not-cached-model-xyz")
    with pytest.raises(HubUnavailableError, match="cannot connect"):
        load_source("some-org/some-dataset")
    assert time.perf_counter() - start < 5


def test_data_module_hub_name_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(HubUnavailableError, match="'glue/sst2'") as info:
        ClfDataModule("glue", subset="sst2")
    assert time.perf_counter() - start < 5
    assert "'demo'" in str(info.value)
