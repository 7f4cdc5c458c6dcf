"""The search space of an HPO YAML: one :class:`Param` per searched key, read and checked by :func:`parse_param`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import optuna

PARAM_TYPES = ("float", "int", "categorical")
PRIMITIVES = (type(None), bool, int, float, str)


def is_number(value: Any) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class Param:
    """One searched key.

    Args:
        key: Dotted key of the training config.
        type: ``float``, ``int`` or ``categorical``.
        low: Lower bound (numeric types).
        high: Upper bound (numeric types, inclusive).
        log: Sample on a log scale.
        step: Discretisation step (not with ``log``).
        choices: Categorical values; any YAML values (lists and mappings are stored in Optuna as JSON text).
    """

    key: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: list[Any] = field(default_factory=list)

    @property
    def encoded(self) -> bool:
        """Whether the categorical choices go through Optuna as JSON text (some are not plain scalars)."""
        return self.type == "categorical" and not all(isinstance(c, PRIMITIVES) for c in self.choices)

    def suggest(self, trial: optuna.Trial) -> Any:
        """Sample this parameter in ``trial`` and return the config value."""
        if self.type == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return trial.suggest_int(self.key, self.low, self.high, log=self.log, step=self.step or 1)
        if self.encoded:
            return json.loads(trial.suggest_categorical(self.key, [json.dumps(c) for c in self.choices]))
        return trial.suggest_categorical(self.key, self.choices)

    def decode(self, value: Any) -> Any:
        """The config value for a value stored in Optuna."""
        return json.loads(value) if self.encoded else value

    def contains(self, value: Any) -> bool:
        """Whether ``value`` lies in this parameter's range (or is one of its choices)."""
        if self.type == "categorical":
            return value in self.choices
        if not is_number(value) or (self.type == "int" and not isinstance(value, int)):
            return False
        return self.low <= value <= self.high

    def encode(self, value: Any) -> Any:
        """The value as stored in Optuna (inverse of :meth:`decode`)."""
        return json.dumps(value) if self.encoded else value

    def corners(self) -> list[Any]:
        """Values that must all be valid for the script: the bounds, or every choice."""
        return list(self.choices) if self.type == "categorical" else [self.low, self.high]

    def describe(self) -> str:
        """A short human-readable form."""
        if self.type == "categorical":
            return f"{self.key}: one of {self.choices}"
        scale = ", log" if self.log else (f", step {self.step}" if self.step else "")
        return f"{self.key}: {self.type} in [{self.low}, {self.high}]{scale}"

    def as_dict(self) -> dict[str, Any]:
        """The YAML form (as stored with the study)."""
        if self.type == "categorical":
            return {"type": self.type, "choices": self.choices}
        out: dict[str, Any] = {"type": self.type, "low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


def parse_param(key: str, raw: Any) -> tuple[Param | None, list[str]]:
    """Read one ``search_space`` entry.

    Args:
        key: The dotted key.
        raw: Its YAML value.

    Returns:
        The parameter (None when unusable) and the problems found.
    """
    where = f"search_space.{key}"
    if not isinstance(raw, dict):
        return None, [f"{where}: expected a mapping such as {{type: float, low: 0.0, high: 1.0}}, got {raw!r}"]
    kind = raw.get("type")
    if kind not in PARAM_TYPES:
        shown = "missing" if kind is None else repr(kind)
        return None, [f"{where}: unknown type {shown}; expected one of {', '.join(PARAM_TYPES)}"]
    problems: list[str] = []
    allowed = {"type", "choices"} if kind == "categorical" else {"type", "low", "high", "log", "step"}
    extra = sorted(set(raw) - allowed)
    if extra:
        problems.append(f"{where}: unknown field(s) {extra} for type {kind}; expected {sorted(allowed)}")
    if kind == "categorical":
        choices = raw.get("choices")
        if not isinstance(choices, list) or not choices:
            problems.append(f"{where}: categorical needs a non-empty list of choices, got {choices!r}")
            return None, problems
        if len({json.dumps(c, sort_keys=True, default=str) for c in choices}) != len(choices):
            problems.append(f"{where}: duplicate choices in {choices}")
        return Param(key, kind, choices=choices), problems
    low, high, log, step = raw.get("low"), raw.get("high"), raw.get("log", False), raw.get("step")
    number_check = (lambda v: isinstance(v, int) and not isinstance(v, bool)) if kind == "int" else is_number
    for name, value in (("low", low), ("high", high)):
        if not number_check(value):
            problems.append(f"{where}: {name} must be {'an integer' if kind == 'int' else 'a number'}, got {value!r}")
    if not isinstance(log, bool):
        problems.append(f"{where}: log must be true or false, got {log!r}")
    if step is not None and (not number_check(step) or step <= 0):
        problems.append(f"{where}: step must be a positive {'integer' if kind == 'int' else 'number'}, got {step!r}")
    if problems:
        return None, problems
    if low >= high:
        problems.append(f"{where}: empty range, low={low} must be < high={high}")
    if log and low <= 0:
        problems.append(f"{where}: log scale needs low > 0, got low={low}")
    if log and step is not None:
        problems.append(f"{where}: step cannot be combined with log")
    return Param(key, kind, low=low, high=high, log=log, step=step), problems
