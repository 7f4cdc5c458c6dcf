"""Which student encoder layer learns from which teacher encoder layer.

A layer map is a list of ``(student_layer, teacher_layer)`` pairs of 0-based encoder layer indices, where layer ``i``
is the output of the ``i``-th encoder block (``output_hidden_states[i + 1]`` in Hugging Face terms; the embedding
output is not a layer here). It is written in a config either as a strategy name or as explicit pairs:

* ``"uniform"``: TinyBERT's uniform mapping (Jiao et al. 2020, arXiv:1909.10351), student layer ``m`` learns from
  teacher layer ``g(m) = m * N / M`` (1-based, ``N`` teacher and ``M`` student layers). In 0-based indices student
  ``i`` maps to teacher ``(i + 1) * N / M - 1``. When ``N`` is not a multiple of ``M`` the quotient is rounded down
  (``(i + 1) * N // M - 1``): because ``N >= M`` the 1-based targets grow by at least one per student layer, so the
  map stays strictly increasing, and the last student layer always maps to the last teacher layer. For example
  6 -> 4 layers gives ``[(0, 0), (1, 2), (2, 3), (3, 5)]``.
* ``"last"``: MiniLM's mapping, only the last student layer learns from the last teacher layer.
* ``"uniform_but_last"``: ``"uniform"`` without the last student layer, as Patient-KD's patient loss (Sun et al.
  2019, arXiv:1908.09355; PKD-skip) leaves the last layer to the prediction loss. 12 -> 6 layers gives
  ``[(0, 1), (1, 3), (2, 5), (3, 7), (4, 9)]``. It needs a student of at least 2 layers.
* ``[[s, t], ...]``: explicit pairs (lists or tuples of two ints, as YAML gives them).

**Index convention.** Layer 0 here is the *first encoder block*. TinyBERT's and TextBrewer's configs count the
embedding output as layer 0, so their layer ``k`` is layer ``k - 1`` here (and their hidden-state index ``N`` is the
last layer, ``N - 1`` here; the embedding output is the ``EmbdTinyBERT`` adaptor). A map copied from them typically
names layer ``N`` of an ``N``-layer model: that is refused with a message saying how to convert it.
"""

from collections.abc import Sequence
from numbers import Integral
from typing import Any, NoReturn

__all__ = ["LAYER_MAP_STRATEGIES", "resolve_layer_map"]

LAYER_MAP_STRATEGIES = ("uniform", "last", "uniform_but_last")
"""Strategy names accepted as a layer-map spec."""

_EXPECTED_FORM = (
    f"expected one of {', '.join(repr(s) for s in LAYER_MAP_STRATEGIES)} or a non-empty list of "
    "[student_layer, teacher_layer] pairs of 0-based integer layer indices"
)


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _layers_text(role: str, count: int) -> str:
    return f"{role} has {count} layer{'s' if count != 1 else ''} (0..{count - 1})"


def _raise(field: str, spec: Any, problems: list[str]) -> NoReturn:
    lines = "\n".join(f"  - {problem}" for problem in problems)
    raise ValueError(f"invalid {field} = {spec!r}:\n{lines}\n{_EXPECTED_FORM}")


def _uniform(field: str, spec: Any, teacher_layers: int, student_layers: int) -> list[tuple[int, int]]:
    if student_layers > teacher_layers:
        _raise(
            field,
            spec,
            [
                f"'uniform' needs a student no deeper than the teacher, but the student has {student_layers} layers "
                f"and the teacher {teacher_layers}: each student layer would need its own, deeper teacher layer. "
                "Use 'last' or explicit pairs (several student layers may share a teacher layer)"
            ],
        )
    return [(i, (i + 1) * teacher_layers // student_layers - 1) for i in range(student_layers)]


def _explicit(field: str, spec: Sequence[Any], teacher_layers: int, student_layers: int) -> list[tuple[int, int]]:
    problems: list[str] = []
    if len(spec) == 0:
        _raise(field, spec, ["the list of pairs is empty; give at least one [student_layer, teacher_layer] pair"])
    pairs: list[tuple[int, int]] = []
    first_seen: dict[int, int] = {}
    off_by_one = False
    for k, pair in enumerate(spec):
        where = f"{field}[{k}] = {pair!r}"
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence):
            problems.append(f"{where}: not a [student_layer, teacher_layer] pair")
            continue
        if len(pair) != 2:
            problems.append(f"{where}: a pair has 2 entries [student_layer, teacher_layer], this one has {len(pair)}")
            continue
        student, teacher = pair
        ok = True
        for role, value, count in (("student", student, student_layers), ("teacher", teacher, teacher_layers)):
            if not _is_int(value):
                problems.append(f"{where}: {role} layer {value!r} is not an integer")
                ok = False
            elif not 0 <= value < count:
                problems.append(f"{where}: {role} layer {value} is out of range, {_layers_text(role, count)}")
                off_by_one = off_by_one or value == count
                ok = False
        if not ok:
            continue
        student, teacher = int(student), int(teacher)
        if student in first_seen:
            problems.append(
                f"{where}: student layer {student} is already mapped by {field}[{first_seen[student]}]; "
                "each student layer may appear once"
            )
            continue
        first_seen[student] = k
        pairs.append((student, teacher))
    if off_by_one:
        problems.append(
            "layer 0 here is the first encoder block, not the embedding output: a map written for TinyBERT or "
            "TextBrewer (where 0 is the embedding output and N the last layer) must have 1 subtracted from every "
            "index; their layer 0 is the EmbdTinyBERT adaptor"
        )
    if problems:
        _raise(field, spec, problems)
    return sorted(pairs)


def resolve_layer_map(
    spec: str | Sequence[Sequence[int]] | None,
    teacher_layers: int,
    student_layers: int,
    *,
    default: str = "uniform",
    field: str = "layers",
) -> list[tuple[int, int]]:
    """Resolves a layer-map spec into ``(student_layer, teacher_layer)`` pairs.

    Args:
        spec: ``"uniform"``, ``"last"``, ``"uniform_but_last"`` (case-insensitive), explicit pairs
            ``[[s, t], ...]``, or ``None`` for ``default``.
        teacher_layers: Number of teacher encoder layers.
        student_layers: Number of student encoder layers.
        default: Strategy used when ``spec`` is ``None``.
        field: Name of the config field, used in error messages.

    Returns:
        ``(student_layer, teacher_layer)`` pairs of 0-based encoder layer indices (layer ``i`` = output of the
        ``i``-th encoder block), sorted by student layer. See the module docstring for the strategies.

    Raises:
        ValueError: If the spec is invalid. The message names ``field``, the offending values and the expected
            form or range, and lists every problem found at once.
    """
    for role, count in (("teacher_layers", teacher_layers), ("student_layers", student_layers)):
        if not _is_int(count) or count < 1:
            raise ValueError(f"cannot resolve {field}: {role} must be a positive integer, got {count!r}")

    strategy_spec = default if spec is None else spec
    if isinstance(strategy_spec, str):
        strategy = strategy_spec.strip().lower()
        if strategy == "uniform":
            return _uniform(field, strategy_spec, teacher_layers, student_layers)
        if strategy == "last":
            return [(student_layers - 1, teacher_layers - 1)]
        if strategy == "uniform_but_last":
            if student_layers < 2:
                source = f" (the default, as {field} is not set)" if spec is None else ""
                _raise(
                    field,
                    strategy_spec,
                    [
                        f"'uniform_but_last'{source} leaves the last student layer out, but the student has only "
                        f"{student_layers} layer: nothing would be mapped. Use 'uniform' or 'last'"
                    ],
                )
            return _uniform(field, strategy_spec, teacher_layers, student_layers)[:-1]
        source = f" (the default, as {field} is not set)" if spec is None else ""
        _raise(field, strategy_spec, [f"unknown layer-map strategy {strategy_spec!r}{source}"])
    if isinstance(spec, (bytes, bytearray)) or not isinstance(spec, Sequence):
        _raise(field, spec, [f"a {type(spec).__name__} is neither a strategy name nor a list of pairs"])
    return _explicit(field, spec, teacher_layers, student_layers)
