"""Adaptor registry and the builder that turns a user's adaptor specification into adaptor instances."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from adaptors.base import ADAPTOR_KINDS, LAYER_DEFAULTS, TAP_NAMES, Adaptor, ModelDims, _is_real, check_weight
from common.errors import ProblemsError

__all__ = ["ADAPTORS", "UnknownAdaptorError", "build_adaptors", "get_adaptor", "register"]

#: Registered adaptor classes by name (the class name).
ADAPTORS: dict[str, type[Adaptor]] = {}


class UnknownAdaptorError(ProblemsError, KeyError):
    """Raised by :func:`get_adaptor` for a name that is not registered (both a ``KeyError`` and a ``ValueError``)."""

    bare_single = True


def register(cls: type[Adaptor]) -> type[Adaptor]:
    """Class decorator adding an :class:`Adaptor` subclass to :data:`ADAPTORS` under its class name.

    Args:
        cls: The adaptor class.

    Returns:
        ``cls`` unchanged.

    Raises:
        TypeError: If ``cls`` is not an :class:`Adaptor` subclass.
        ValueError: If the name is already registered or the class attributes are invalid.
    """
    if not (isinstance(cls, type) and issubclass(cls, Adaptor)) or cls is Adaptor:
        raise TypeError(f"@register expects an Adaptor subclass, got {cls!r}")
    name = cls.__name__
    if name in ADAPTORS:
        other = ADAPTORS[name]
        raise ValueError(
            f"adaptor name {name!r} is already registered by {other.__module__}.{other.__qualname__}; "
            "adaptor class names must be unique"
        )
    problems = []
    if not isinstance(cls.needs, frozenset) or not cls.needs or not cls.needs <= TAP_NAMES:
        problems.append(f"needs must be a non-empty frozenset of {sorted(TAP_NAMES)}, got {cls.needs!r}")
    if cls.kind not in ADAPTOR_KINDS:
        problems.append(f"kind must be one of {sorted(ADAPTOR_KINDS)}, got {cls.kind!r}")
    if cls.default_layers not in LAYER_DEFAULTS:
        problems.append(f"default_layers must be one of {list(LAYER_DEFAULTS)}, got {cls.default_layers!r}")
    if cls.kind == "logit" and cls.default_layers is not None:
        problems.append(f"a logit adaptor uses no layers, so default_layers must be None, got {cls.default_layers!r}")
    if problems:
        raise ValueError(f"cannot register {name}: " + "; ".join(problems))
    cls.name = name
    ADAPTORS[name] = cls
    return cls


def _suggest(word: str, choices: Sequence[str]) -> str | None:
    """The closest of ``choices`` to ``word`` (case-insensitive), or None."""
    by_lower = {c.lower(): c for c in choices}
    if word.lower() in by_lower:
        return by_lower[word.lower()]
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else None


def _unknown_name_message(name: Any) -> str:
    valid = sorted(ADAPTORS)
    hint = _suggest(name, valid) if isinstance(name, str) else None
    did_you_mean = f" (did you mean {hint!r}?)" if hint else ""
    return f"unknown adaptor {name!r}{did_you_mean}; valid adaptors: {', '.join(valid)}"


def get_adaptor(name: str) -> type[Adaptor]:
    """Look up a registered adaptor class.

    Args:
        name: The adaptor's class name, e.g. ``"LogitKD"``.

    Returns:
        The adaptor class.

    Raises:
        UnknownAdaptorError: (a ``KeyError`` and ``ValueError``) listing all valid names and a close match.
    """
    if isinstance(name, str) and name in ADAPTORS:
        return ADAPTORS[name]
    raise UnknownAdaptorError(_unknown_name_message(name))


def accepted_options(cls: type[Adaptor]) -> set[str]:
    """Keyword options the adaptor's constructor accepts (``layers`` only for adaptors that use layers)."""
    return set(cls.option_defaults())


@dataclass
class _Entry:
    """One normalised item of a spec."""

    where: str
    name: Any = None
    options: dict[str, Any] = field(default_factory=dict)
    instance: Adaptor | None = None


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _is_weight_like(value: Any) -> bool:
    return _is_real(value)


def _entry_from_pair(where: str, name: Any, value: Any, errors: list[str]) -> _Entry | None:
    """Entry for ``name: value`` (mapping form) where value is a weight, an options mapping or None."""
    if value is None:
        return _Entry(where, name, {})
    if _is_weight_like(value):
        return _Entry(where, name, {"weight": value})
    if isinstance(value, Mapping):
        options = dict(value)
        if "name" in options:
            inner = options.pop("name")
            if inner != name:
                errors.append(f"{where}: conflicting names {name!r} and name={inner!r}")
                return None
        return _Entry(where, name, options)
    errors.append(
        f"{where}: expected a weight (number), a mapping of options or None for {name!r}, got {_describe(value)}"
    )
    return None


def _entry_from_sequence(where: str, item: Sequence, errors: list[str]) -> _Entry | None:
    """Entry for ``(name, weight)``, ``(name, options)`` or ``(name, weight, options)``."""
    if len(item) == 2 and (_is_weight_like(item[1]) or isinstance(item[1], Mapping)):
        return _entry_from_pair(where, item[0], item[1], errors)
    if len(item) == 3 and _is_weight_like(item[1]) and isinstance(item[2], Mapping):
        options = dict(item[2])
        if "weight" in options:
            errors.append(f"{where}: weight given twice ({item[1]!r} and weight={options['weight']!r})")
            return None
        return _entry_from_pair(where, item[0], {**options, "weight": item[1]}, errors)
    errors.append(
        f"{where}: expected (name, weight), (name, options) or (name, weight, options), got {_describe(item)}"
    )
    return None


def _entry_from_item(where: str, item: Any, errors: list[str]) -> _Entry | None:
    """Entry for one element of a list spec."""
    if isinstance(item, Adaptor):
        return _Entry(where, item.name, instance=item)
    if isinstance(item, str):
        return _Entry(where, item)
    if isinstance(item, Mapping):
        if "name" in item:
            options = dict(item)
            return _Entry(where, options.pop("name"), options)
        if len(item) == 1:  # YAML style "- LogitKD: {temperature: 4}"
            ((name, value),) = item.items()
            return _entry_from_pair(where, name, value, errors)
        errors.append(
            f"{where}: a mapping entry needs a 'name' key or must be a single {{name: options}} pair, "
            f"got keys {sorted(map(str, item))}"
        )
        return None
    if isinstance(item, Sequence):
        return _entry_from_sequence(where, item, errors)
    errors.append(
        f"{where}: expected an adaptor name, (name, weight), a dict with 'name', or an Adaptor, got {_describe(item)}"
    )
    return None


def _is_bare_pair(spec: Sequence) -> bool:
    """Whether a top-level sequence is one ``(name, weight[, options])`` or ``(name, options)`` entry.

    A list of entries never holds a bare number, and a ``{key: ...}`` dict whose keys are not adaptor names (and
    that has no ``name`` key) can only be the options of the preceding name.
    """
    if len(spec) not in (2, 3) or not isinstance(spec[0], str):
        return False
    if _is_weight_like(spec[1]):
        return True
    second = spec[1]
    return (
        len(spec) == 2
        and isinstance(second, Mapping)
        and "name" not in second
        and not any(isinstance(k, str) and k in ADAPTORS for k in second)
    )


def normalise_spec(spec: Any, errors: list[str]) -> list[_Entry]:
    """Turn any accepted spec form into a list of entries, appending problems to ``errors``."""
    if spec is None:
        return []
    if isinstance(spec, (str, Adaptor)):
        entry = _entry_from_item("spec", spec, errors)
        return [entry] if entry else []
    if isinstance(spec, Mapping):
        if "name" in spec:  # a single {"name": ..., ...} dict
            entry = _entry_from_item("spec", spec, errors)
            return [entry] if entry else []
        entries = [_entry_from_pair(f"spec[{k!r}]", k, v, errors) for k, v in spec.items()]
        return [e for e in entries if e]
    if isinstance(spec, Sequence):
        if _is_bare_pair(spec):
            entry = _entry_from_sequence("spec", spec, errors)
            return [entry] if entry else []
        entries = [_entry_from_item(f"spec[{i}]", item, errors) for i, item in enumerate(spec)]
        return [e for e in entries if e]
    errors.append(
        f"spec: expected an adaptor name, a list of entries, a mapping name -> weight/options, or an Adaptor, "
        f"got {_describe(spec)}"
    )
    return []


def build_adaptors(
    spec: Any, teacher: ModelDims, student: ModelDims, defaults: Mapping[str, Any] | None = None
) -> list[Adaptor]:
    """Build adaptor instances from any specification a YAML config or a Python user would write.

    Accepted forms (mixable inside a list):

    * a name: ``"LogitKD"``; a list of names: ``["AttnMiniLM", "ValMiniLM"]``;
    * ``(name, weight)`` pairs: ``[["LogitKD", 0.5], ("HidnTinyBERT", 1.0)]`` (also ``(name, options)`` and
      ``(name, weight, options)``);
    * dicts with a ``name`` key: ``[{"name": "LogitKD", "weight": 0.5, "temperature": 4}]``, or single-key
      ``{name: options}`` dicts as YAML lists often have them;
    * a mapping ``{"LogitKD": 0.5, "AttnMiniLM": {"weight": 1.0, "relation_heads": 4}}`` (value: weight, options
      or None);
    * already-built :class:`Adaptor` instances, passed through unchanged.

    Every problem in the spec is collected and reported in one ``ValueError``: unknown names (with a suggestion),
    duplicate names, invalid weights, unknown option keys (with the accepted options), and each adaptor's own option
    errors.

    Args:
        spec: The specification (None or empty: no adaptors).
        teacher: Teacher dimensions.
        student: Student dimensions.
        defaults: Options (e.g. ``{"temperature": 4.0}``) filled in for an adaptor only when its constructor accepts
            that keyword and the user did not set it.

    Returns:
        The adaptors, in spec order.

    Raises:
        TypeError: If ``teacher``/``student`` are not :class:`ModelDims`.
        ValueError: Listing every problem found in the spec.
    """
    for role, dims in (("teacher", teacher), ("student", student)):
        if not isinstance(dims, ModelDims):
            raise TypeError(f"build_adaptors: {role} must be a ModelDims, got {type(dims).__name__}")
    errors: list[str] = []
    if defaults is None:
        defaults = {}
    elif not isinstance(defaults, Mapping):
        errors.append(f"defaults: expected a mapping of option -> value, got {_describe(defaults)}")
        defaults = {}

    entries = normalise_spec(spec, errors)

    seen: dict[str, str] = {}
    for e in entries:
        if isinstance(e.name, str):
            if e.name in seen:
                errors.append(f"{e.where}: duplicate adaptor {e.name!r} (already given at {seen[e.name]})")
            else:
                seen[e.name] = e.where

    built: list[Adaptor] = []
    for e in entries:
        if e.instance is not None:
            inst = e.instance
            for role, want, have in (("teacher", teacher, inst.teacher_dims), ("student", student, inst.student_dims)):
                if have != want:
                    errors.append(f"{e.where}: {e.name} instance was built for {role} {have}, but the {role} is {want}")
            built.append(e.instance)
            continue
        if not isinstance(e.name, str) or e.name not in ADAPTORS:
            errors.append(f"{e.where}: {_unknown_name_message(e.name)}")
            continue
        cls = ADAPTORS[e.name]
        accepted = accepted_options(cls)
        options = dict(e.options)
        bad_keys = [k for k in options if k not in accepted]
        for k in bad_keys:
            hint = _suggest(str(k), sorted(accepted))
            did_you_mean = f" (did you mean {hint!r}?)" if hint else ""
            errors.append(
                f"{e.where}: {e.name} has no option {k!r}{did_you_mean}; "
                f"accepted options: {', '.join(sorted(accepted))}"
            )
            del options[k]
        for k, v in defaults.items():
            if k in accepted and k not in options:
                options[k] = v
        if "weight" in options:
            try:
                check_weight(options["weight"], e.name)
            except ValueError as exc:
                errors.append(f"{e.where}: {exc}")
                options["weight"] = 1.0  # placeholder, so the other options are still checked
        try:
            adaptor = cls(teacher, student, **options)
        except (ValueError, TypeError) as exc:
            errors.append(f"{e.where}: {exc}")
            continue
        built.append(adaptor)

    if errors:
        lines = "\n".join(f"  - {msg}" for msg in errors)
        raise ValueError(f"invalid adaptor spec ({len(errors)} problem{'s' if len(errors) > 1 else ''}):\n{lines}")
    return built
