"""Loading classification data from any source and detecting its text and label fields.

A source is one of: a :class:`datasets.DatasetDict`; the name ``"demo"`` (the small set shipped in ``data/demo``);
a local folder holding ``<split>.{jsonl,json,csv,tsv,parquet}`` files; a mapping of split names to files; a single
local file (used as ``train``); or a Hugging Face Hub dataset name (with an optional subset).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import datasets
from datasets import ClassLabel, DatasetDict, Value

from common.errors import ProblemsError
from common.hub import require_hub

DEMO_DIR = Path(__file__).resolve().parent / "demo"

#: Split names tried, in order, when a folder is given.
SPLIT_FILES = ("train", "validation", "valid", "dev", "test")
#: File endings and the ``datasets`` builder that reads them.
FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}
#: Sentence-pair fields tried first, then single-text fields, in order.
PAIR_FIELDS = (
    ("sentence1", "sentence2"),
    ("question1", "question2"),
    ("premise", "hypothesis"),
    ("question", "sentence"),
    ("question", "passage"),
    ("text_a", "text_b"),
)
SINGLE_FIELDS = ("sentence", "text", "content", "review", "tweet", "document", "question")
LABEL_FIELDS = ("label", "labels", "target", "class", "category")
#: ``datasets.Value`` dtypes of text columns: CSV, TSV and Parquet files load as ``large_string``, JSON as ``string``.
STRING_DTYPES = ("string", "large_string", "string_view")
#: Feature types of list columns (``List`` and ``LargeList`` are newer than ``Sequence``); a plain ``list`` is the
#: older shorthand for a list feature.
LIST_FEATURES = (list, *(getattr(datasets, n) for n in ("Sequence", "List", "LargeList") if hasattr(datasets, n)))

DataSource = DatasetDict | str | Path | Mapping[str, str]


class DataError(ProblemsError):
    """Bad input data: every problem found, listed in one message."""

    headline = "{n} problems in the data"
    bare_single = True


def is_int(value: object) -> bool:
    """An ``int`` that is not a ``bool`` (YAML's true/false are not counts)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """An ``int`` or ``float`` that is not a ``bool``."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def settings_problems(settings: object, checks: Sequence[tuple[str, bool, str]], field: str | None) -> list[str]:
    """The messages of the failed checks of a data module's settings dataclass (``augment``, ``balance``).

    Args:
        settings: The dataclass (its values are quoted in the messages).
        checks: ``(attribute, passed, what was expected)`` per value.
        field: The data module's argument: ``augment`` names ``augment.copies (--data.augment.copies)``; None names
            plain ``copies`` (for function arguments).
    """

    def named(name: str) -> str:
        return name if field is None else f"{field}.{name} (--data.{field}.{name})"

    return [
        f"{named(name)}={getattr(settings, name)!r}: expected {expected}" for name, ok, expected in checks if not ok
    ]


def _builder_for(path: Path) -> tuple[str, dict]:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise DataError(
            [f"data file {str(path)!r} has an unsupported ending {suffix!r}; expected one of {sorted(FORMATS)}"]
        )
    return FORMATS[suffix], ({"delimiter": "\t"} if suffix == ".tsv" else {})


def _load_files(files: Mapping[str, str | Path]) -> DatasetDict:
    problems = []
    paths = {split: Path(p).expanduser() for split, p in files.items()}
    for split, path in paths.items():
        if not path.is_file():
            problems.append(f"data file for split {split!r} not found: {str(path)!r}")
    if problems:
        raise DataError(problems)
    builders = [_builder_for(p) for p in paths.values()]
    if any(b != builders[0] for b in builders):
        raise DataError([f"data files mix formats {sorted(p.suffix for p in paths.values())}; use one format"])
    builder, kwargs = builders[0]
    try:
        return datasets.load_dataset(builder, data_files={s: str(p) for s, p in paths.items()}, **kwargs)
    except Exception as err:  # datasets raises many kinds (ArrowInvalid, DatasetGenerationError, ...)
        cause = f" ({err.__cause__})" if err.__cause__ is not None else ""
        raise DataError([f"could not read data files {[str(p) for p in paths.values()]}: {err}{cause}"]) from err


def _files_in_folder(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for split in SPLIT_FILES:
        for suffix in FORMATS:
            candidate = folder / f"{split}{suffix}"
            if candidate.is_file():
                found.setdefault("validation" if split in ("valid", "dev") else split, candidate)
    return found


def load_source(source: DataSource, subset: str | None = None) -> DatasetDict:
    """Load a data source into a :class:`DatasetDict`.

    Args:
        source: See the module docstring for the accepted forms.
        subset: Hub dataset configuration (e.g. ``"sst2"`` for ``"glue"``); only used with Hub names.

    Returns:
        The loaded splits.

    Raises:
        DataError: A path that does not exist, an unreadable file, or a folder with no data files.
        HubUnavailableError: A Hub name while the Hub cannot be reached.
    """
    if isinstance(source, DatasetDict):
        return source
    if isinstance(source, datasets.Dataset):
        return DatasetDict(train=source)
    if isinstance(source, Mapping):
        return _load_files(source)
    if not isinstance(source, (str, Path)):
        raise DataError([f"dataset must be a DatasetDict, a name, a path or a split->file mapping; got {type(source)}"])
    text = str(source)
    if text == "demo":
        return _load_files(_files_in_folder(DEMO_DIR))
    path = Path(text).expanduser()
    if path.is_dir():
        files = _files_in_folder(path)
        if not files:
            raise DataError(
                [
                    f"folder {text!r} holds no data files; expected <split>.<ext> with split in {list(SPLIT_FILES)} "
                    f"and ext in {sorted(FORMATS)}"
                ]
            )
        return _load_files(files)
    if path.is_file():
        return _load_files({"train": path})
    first = Path(text.split("/")[0]).expanduser()
    if path.suffix.lower() in FORMATS or text.startswith((".", "/", "~")) or text.count("/") > 1 or first.is_dir():
        raise DataError([f"dataset path {text!r} does not exist"])
    require_hub(
        "dataset",
        text if subset is None else f"{text}/{subset}",
        "Offline, use local files instead: a folder such as '../shared/data/sst2' with train.jsonl and "
        "validation.jsonl, a mapping {split: file}, or 'demo' for the bundled demo set.",
    )
    return datasets.load_dataset(text, subset)


def detect_text_fields(columns: Sequence[str], override: str | Sequence[str] | None = None) -> list[str]:
    """Choose the text field(s): a known sentence pair first, then a known single-text field.

    Args:
        columns: Column names of the training split.
        override: Explicit field name or pair of names.

    Returns:
        One or two column names.

    Raises:
        DataError: The override names a missing column, or no known text field exists.
    """
    if override is not None:
        fields = [override] if isinstance(override, str) else list(override)
        missing = [f for f in fields if f not in columns]
        if not fields or len(fields) > 2 or missing:
            raise DataError(
                [
                    f"text_fields={fields!r}: expected one or two of the existing columns {list(columns)}"
                    + (f"; missing {missing}" if missing else "")
                ]
            )
        return fields
    for pair in PAIR_FIELDS:
        if all(f in columns for f in pair):
            return list(pair)
    for field in SINGLE_FIELDS:
        if field in columns:
            return [field]
    raise DataError(
        [
            f"no text field found among columns {list(columns)}; expected one of {list(SINGLE_FIELDS)} or a pair "
            f"{[list(p) for p in PAIR_FIELDS]}, or set text_fields explicitly"
        ]
    )


def detect_label_field(columns: Sequence[str], override: str | None = None) -> str:
    """Choose the label field (``label``, ``labels``, ...), or check the explicit one exists."""
    if override is not None:
        if override not in columns:
            raise DataError([f"label_field={override!r} is not a column; existing columns: {list(columns)}"])
        return override
    for field in LABEL_FIELDS:
        if field in columns:
            return field
    raise DataError(
        [
            f"no label field found among columns {list(columns)}; expected one of {list(LABEL_FIELDS)}, "
            "or set label_field explicitly"
        ]
    )


def class_label_names(dataset: DatasetDict, label_field: str) -> list[str] | None:
    """Label names from a ``ClassLabel`` feature of any split (or a list of them, multi-label), if there is one."""
    for split in dataset.values():
        feature = split.features.get(label_field)
        if isinstance(feature, LIST_FEATURES) and not isinstance(feature, list):
            feature = feature.feature
        if isinstance(feature, ClassLabel):
            return list(feature.names)
    return None


#: File of class names (a JSON list, in label order) read from beside the data files when no names are given.
LABEL_NAMES_FILE = "label_names.json"


def names_beside(source: DataSource) -> list[str] | None:
    """Class names from a ``label_names.json`` beside a local data source (its folder, or its files' folder).

    Args:
        source: A data source (see :func:`load_source`); only local folders, files and split->file mappings have one.

    Returns:
        The names, or None when there is no such file.

    Raises:
        DataError: The file is not a JSON list of distinct strings.
    """
    if isinstance(source, (DatasetDict, datasets.Dataset)):
        return None
    if isinstance(source, Mapping):
        paths = [Path(p).expanduser().parent for p in source.values() if isinstance(p, (str, Path))]
    elif isinstance(source, (str, Path)) and str(source) != "demo":
        path = Path(source).expanduser()
        paths = [path] if path.is_dir() else [path.parent] if path.is_file() else []
    else:
        return None
    found = next((p / LABEL_NAMES_FILE for p in paths if (p / LABEL_NAMES_FILE).is_file()), None)
    if found is None:
        return None
    try:
        names = json.loads(found.read_text(encoding="utf-8"))
    except ValueError as err:
        raise DataError([f"{str(found)!r} is not valid JSON ({err}); expected a list of class names"]) from err
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise DataError([f"{str(found)!r} holds {names!r}; expected a JSON list of distinct class names, in id order"])
    return names


def label_kind(feature: object) -> str:
    """What a label column holds, from its ``datasets`` feature type.

    Args:
        feature: The column's feature (``split.features[label_field]``).

    Returns:
        ``"class"`` (a ``ClassLabel``), ``"int"`` (``int*``/``uint*``), ``"float"`` (``float*``), ``"bool"``,
        ``"string"`` (``string``, ``large_string`` or ``string_view``), ``"multi"`` (a ``List``/``LargeList``/
        ``Sequence``, i.e. several labels per example), ``"null"`` (no value at all) or ``"other"`` (anything else,
        e.g. ``Json`` for a column that mixes numbers and strings; its values are checked one by one).
    """
    if isinstance(feature, ClassLabel):
        return "class"
    if isinstance(feature, LIST_FEATURES):
        return "multi"
    if not isinstance(feature, Value):
        return "other"
    dtype = feature.dtype
    if dtype in STRING_DTYPES:
        return "string"
    if dtype == "bool":
        return "bool"
    if dtype == "null":
        return "null"
    if dtype.startswith(("int", "uint")):
        return "int"
    if dtype.startswith("float"):
        return "float"
    return "other"
