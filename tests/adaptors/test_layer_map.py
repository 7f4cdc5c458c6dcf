"""Tests for adaptors.layer_map.resolve_layer_map."""

import pytest

from adaptors.layer_map import resolve_layer_map


@pytest.mark.parametrize(
    ("teacher", "student", "expected"),
    [
        (6, 2, [(0, 2), (1, 5)]),
        (4, 2, [(0, 1), (1, 3)]),
        (6, 3, [(0, 1), (1, 3), (2, 5)]),
        (12, 4, [(0, 2), (1, 5), (2, 8), (3, 11)]),
        (6, 4, [(0, 0), (1, 2), (2, 3), (3, 5)]),  # not divisible: rounded down
        (7, 3, [(0, 1), (1, 3), (2, 6)]),
        (4, 4, [(0, 0), (1, 1), (2, 2), (3, 3)]),
        (5, 1, [(0, 4)]),
    ],
)
def test_uniform(teacher: int, student: int, expected: list[tuple[int, int]]) -> None:
    assert resolve_layer_map("uniform", teacher, student) == expected


@pytest.mark.parametrize("teacher", range(1, 25))
def test_uniform_is_strictly_increasing_and_ends_at_the_last_layers(teacher: int) -> None:
    for student in range(1, teacher + 1):
        pairs = resolve_layer_map("uniform", teacher, student)
        assert [s for s, _ in pairs] == list(range(student))
        targets = [t for _, t in pairs]
        assert all(a < b for a, b in zip(targets, targets[1:], strict=False))
        assert targets[-1] == teacher - 1
        assert targets[0] >= 0
        if teacher % student == 0:  # exactly TinyBERT's g(m) = m * N / M (1-based)
            assert targets == [m * teacher // student - 1 for m in range(1, student + 1)]


def test_last() -> None:
    assert resolve_layer_map("last", 12, 6) == [(5, 11)]
    assert resolve_layer_map("last", 2, 6) == [(5, 1)]  # a deeper student is fine for "last"


def test_none_uses_default_and_strategy_names_are_case_insensitive() -> None:
    assert resolve_layer_map(None, 6, 2) == [(0, 2), (1, 5)]
    assert resolve_layer_map(None, 6, 2, default="last") == [(1, 5)]
    assert resolve_layer_map(" Last ", 6, 2) == [(1, 5)]


def test_explicit_pairs() -> None:
    assert resolve_layer_map([[0, 1], [1, 3]], 4, 2) == [(0, 1), (1, 3)]
    assert resolve_layer_map(((1, 5), (0, 5)), 6, 2) == [(0, 5), (1, 5)]  # tuples; sorted; teacher layers may repeat
    result = resolve_layer_map([[2, 0]], 1, 3)
    assert result == [(2, 0)] and all(type(x) is int for pair in result for x in pair)


def _message(spec, teacher: int = 6, student: int = 2, **kwargs) -> str:
    with pytest.raises(ValueError) as info:
        resolve_layer_map(spec, teacher, student, **kwargs)
    return str(info.value)


def test_unknown_strategy() -> None:
    message = _message("uniformm", field="distill.hidden.layers")
    assert "distill.hidden.layers" in message and "'uniformm'" in message
    assert "'uniform'" in message and "'last'" in message
    message = _message(None, default="first")
    assert "'first'" in message and "default" in message


def test_wrong_type() -> None:
    message = _message(3)
    assert "layers = 3" in message and "int" in message and "pairs" in message
    assert "dict" in _message({"0": 1})


def test_empty_list() -> None:
    message = _message([], field="attn_layers")
    assert "attn_layers" in message and "empty" in message


def test_pair_length() -> None:
    message = _message([[0, 1, 2], [1]])
    assert "layers[0] = [0, 1, 2]" in message and "has 3" in message
    assert "layers[1] = [1]" in message and "has 1" in message
    assert "layers[0] = 'ab'" in _message(["ab"]) and "not a [student_layer, teacher_layer] pair" in _message([5])


def test_non_integers_including_bools() -> None:
    message = _message([[0.0, 1], [1, True], ["1", 2]])
    assert "student layer 0.0 is not an integer" in message
    assert "teacher layer True is not an integer" in message
    assert "student layer '1' is not an integer" in message


def test_out_of_range_for_either_depth() -> None:
    message = _message([[2, 1], [0, 6], [-1, 0]], teacher=6, student=2)
    assert "layers[0] = [2, 1]: student layer 2 is out of range, student has 2 layers (0..1)" in message
    assert "layers[1] = [0, 6]: teacher layer 6 is out of range, teacher has 6 layers (0..5)" in message
    assert "layers[2] = [-1, 0]: student layer -1 is out of range" in message


def test_duplicate_student_layers() -> None:
    message = _message([[0, 1], [1, 2], [0, 3]])
    assert "layers[2] = [0, 3]: student layer 0 is already mapped by layers[0]" in message


def test_all_problems_are_listed_at_once() -> None:
    message = _message([[0, 1], [0, 2], [5, 1], [1, "x"], [1]], field="hidden_layers")
    assert message.startswith("invalid hidden_layers = ")
    problems = [line for line in message.splitlines() if line.startswith("  - ")]
    assert len(problems) == 4
    assert "expected one of 'uniform', 'last', 'uniform_but_last' or a non-empty list" in message
    assert "embedding output" not in message  # no index equals a depth: no off-by-one hint


@pytest.mark.parametrize(
    ("teacher", "student", "expected"),
    [
        (12, 6, [(0, 1), (1, 3), (2, 5), (3, 7), (4, 9)]),  # PKD-skip: teacher layers 2, 4, ..., 10 (1-based)
        (4, 2, [(0, 1)]),
        (6, 4, [(0, 0), (1, 2), (2, 3)]),
        (3, 3, [(0, 0), (1, 1)]),
    ],
)
def test_uniform_but_last_is_uniform_without_the_last_student_layer(teacher, student, expected) -> None:
    assert resolve_layer_map("uniform_but_last", teacher, student) == expected
    assert resolve_layer_map("uniform", teacher, student)[:-1] == expected


def test_uniform_but_last_needs_two_student_layers() -> None:
    message = _message(None, teacher=4, student=1, default="uniform_but_last")
    assert "'uniform_but_last' (the default, as layers is not set)" in message and "only 1 layer" in message


def test_a_map_copied_from_tinybert_gets_the_index_convention_explained() -> None:
    # TinyBERT/TextBrewer count the embedding output as 0: their last layer of a 4-layer teacher is 4.
    message = _message([[1, 2], [2, 4]], teacher=4, student=2)
    assert "teacher layer 4 is out of range" in message and "student layer 2 is out of range" in message
    assert "layer 0 here is the first encoder block, not the embedding output" in message
    assert "subtracted from every index" in message


def test_uniform_student_deeper_than_teacher() -> None:
    message = _message("uniform", teacher=2, student=4, field="layers")
    assert "student has 4 layers and the teacher 2" in message and "'last' or explicit pairs" in message
    assert "student has 4" in _message(None, teacher=2, student=4)


@pytest.mark.parametrize(("teacher", "student"), [(0, 2), (6, 0), (6, True), (6.0, 2)])
def test_invalid_depths(teacher, student) -> None:
    assert "positive integer" in _message("uniform", teacher=teacher, student=student)
