"""Fast, explicit failure for Hugging Face Hub names when the Hub cannot be reached.

Without a network, ``from_pretrained``/``load_dataset`` retry for about 20 seconds before failing with a generic
message. Checking reachability first (a DNS lookup and one TCP connect, a few seconds at most) lets the project fail
at once with a message that names the local alternatives.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

_TRUE = {"1", "true", "yes", "on"}


class HubUnavailableError(OSError):
    """A Hub name was given but the Hub is not reachable (offline mode or no network)."""


def hub_offline_reason(timeout: float = 3.0) -> str | None:
    """Why the Hub cannot be used now, or None when it looks reachable.

    Args:
        timeout: Seconds allowed for the TCP connection attempt.

    Returns:
        A short human-readable reason, or None.
    """
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return f"{var}={os.environ[var]} is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (443 if parsed.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as err:
        return f"cannot connect to {host}:{port} ({err.__class__.__name__}: {err})"


def require_hub(kind: str, name: str, alternatives: str) -> None:
    """Raise :class:`HubUnavailableError` when ``name`` would need the Hub and the Hub is unreachable.

    Args:
        kind: What is being loaded, e.g. ``"model"`` or ``"dataset"`` (used in the message).
        name: The Hub name the user gave.
        alternatives: A sentence naming what can be used offline instead.
    """
    reason = hub_offline_reason()
    if reason is not None:
        raise HubUnavailableError(
            f"{kind} {name!r} is not a local path, so it would be downloaded from the Hugging Face Hub, "
            f"but the Hub is unreachable: {reason}. {alternatives}"
        )
