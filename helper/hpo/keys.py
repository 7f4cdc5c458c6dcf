"""Dotted keys into a training config: ``model.adaptors.AttnMiniLM.weight``, ``trainer.callbacks.0.init_args.mode``.

Keys address nested mappings with dots; inside a list an element is chosen by index, by its ``name`` (adaptors, whatever
form ``model.adaptors`` is written in) or by the last part of its ``class_path``
(``trainer.callbacks.ModelCheckpoint.init_args.monitor``).
"""

from __future__ import annotations

import copy
import difflib
import re
from typing import Any

from adaptors import ADAPTORS, accepted_options
from adaptors.registry import normalise_spec as normalise_adaptors

ADAPTORS_KEY = "model.adaptors"


class KeyPathError(KeyError):
    """A dotted key that does not address a value of a config."""

    def __str__(self) -> str:
        return str(self.args[0])


class NullSectionError(KeyPathError):
    """A dotted key that goes through a value left at null (an optional section not set, such as ``data.augment``):
    the keys inside it cannot be listed from the config; setting one starts the section (``locate(create=True)``)."""


def _is_adaptor_entry(path: str) -> bool:
    return path.startswith(ADAPTORS_KEY + ".") and path.count(".") == 2


def canonical_adaptors(spec: Any) -> list[dict[str, Any]]:
    """Rewrite any adaptor specification form as a list of ``{"name": ..., **options}`` dicts (same order).

    Args:
        spec: ``model.adaptors`` as a config holds it: names, pairs, dicts, or a ``{name: weight_or_options}`` map.

    Raises:
        KeyPathError: The specification cannot be read.
    """
    errors: list[str] = []
    entries = normalise_adaptors(spec, errors)
    if errors:
        raise KeyPathError(f"{ADAPTORS_KEY}: {'; '.join(errors)}")
    return [{"name": e.name, **e.options} for e in entries]


def _list_index(items: list, seg: str) -> int | None:
    """Index of ``seg`` in a config list: an integer, an element's ``name``, or its ``class_path``'s last part."""
    if re.fullmatch(r"-?\d+", seg):
        idx = int(seg)
        return idx % len(items) if -len(items) <= idx < len(items) else None
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        class_path = item.get("class_path")
        if item.get("name") == seg or (isinstance(class_path, str) and class_path.rsplit(".", 1)[-1] == seg):
            return i
    return None


def _describe_list(items: list) -> str:
    names = []
    for i, item in enumerate(items):
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            names.append(item["name"])
        elif isinstance(item, dict) and isinstance(item.get("class_path"), str):
            names.append(item["class_path"].rsplit(".", 1)[-1])
        else:
            names.append(str(i))
    return ", ".join(names) or "(empty)"


def locate(
    cfg: dict[str, Any], key: str, create: bool = False, defaults: dict[str, Any] | None = None
) -> tuple[dict | list, str | int]:
    """Find the container and index that a dotted key addresses in a config.

    ``model.adaptors`` is rewritten in place to its canonical list form (see :func:`canonical_adaptors`) when the key
    goes inside it, so that an adaptor is addressed by name whatever form the YAML used.

    Args:
        cfg: The config (modified only by the adaptor rewrite, and by ``create``).
        key: Dotted key, e.g. ``model.adaptors.AttnMiniLM.weight``.
        create: Fill in missing keys on the way and accept a missing last key (for setting a value).
        defaults: With ``create``, the resolved config that a missing key is copied from (e.g. ``model.adaptors``
            left at its default in the YAML); a key missing there too becomes an empty mapping.

    Returns:
        ``(container, index)`` with ``container[index]`` the addressed value (possibly not there yet with ``create``).

    Raises:
        KeyPathError: The key does not address a value (with the available keys or names).
    """
    parts = key.split(".")
    if not all(parts):
        raise KeyPathError(f"{key}: empty part in the dotted key")
    node: Any = cfg
    for depth, seg in enumerate(parts):
        path, last = ".".join(parts[:depth]), depth == len(parts) - 1
        here = f"{path!r}" if path else "the config"
        if isinstance(node, dict):
            if _is_adaptor_entry(path) and last:
                name = node.get("name")
                options = sorted(accepted_options(ADAPTORS[name])) if name in ADAPTORS else []
                if seg not in options:
                    raise KeyPathError(f"{key}: adaptor {name} has no option {seg!r}; accepted: {', '.join(options)}")
                return node, seg
            if seg not in node:
                if not create:
                    close = difflib.get_close_matches(seg, [str(k) for k in node], n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    raise KeyPathError(
                        f"{key}: {here} has no key {seg!r}{hint}; keys: {', '.join(map(str, node)) or '(none)'}"
                    )
                if last:
                    return node, seg
                node[seg] = _default_at(defaults, ".".join(parts[: depth + 1]))
            if last:
                return node, seg
            if path == "model" and seg == "adaptors":
                node[seg] = canonical_adaptors(node[seg])
            if create and node[seg] is None:  # an optional section left at null (data.augment): a key inside starts it
                node[seg] = {}
            node = node[seg]
        elif isinstance(node, list):
            idx = _list_index(node, seg)
            if idx is None:
                what = "adaptor" if path == ADAPTORS_KEY else "element"
                raise KeyPathError(f"{key}: no {what} {seg!r} in {here}; it has: {_describe_list(node)}")
            if last:
                return node, idx
            node = node[idx]
        else:
            error = NullSectionError if node is None else KeyPathError
            raise error(f"{key}: {here} is {node!r}, not a mapping or a list")
    raise AssertionError("unreachable")


def _default_at(defaults: dict[str, Any] | None, key: str) -> Any:
    """A copy of the value at ``key`` in ``defaults``, else an empty mapping."""
    try:
        return copy.deepcopy(get_key(copy.deepcopy(defaults), key)) if defaults else {}
    except KeyPathError:
        return {}


def get_key(cfg: dict[str, Any], key: str) -> Any:
    """The value a dotted key addresses (see :func:`locate`); an adaptor option not written gives its default."""
    container, index = locate(cfg, key)
    if isinstance(container, dict) and index not in container:  # an adaptor option left at its default
        return ADAPTORS[container["name"]].option_defaults().get(index)
    return container[index]


def set_key(cfg: dict[str, Any], key: str, value: Any, defaults: dict[str, Any] | None = None) -> None:
    """Set the value a dotted key addresses (see :func:`locate`), filling in missing keys from ``defaults``."""
    container, index = locate(cfg, key, create=True, defaults=defaults)
    container[index] = copy.deepcopy(value)
