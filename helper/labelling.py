"""``label.py``: write a teacher's outputs for a data set, once, in the format the data module reads.

Label once on a big machine, distil anywhere (``--model.teacher null --data.teacher_outputs FILE``)::

    python label.py --teacher outputs/teacher_tweet_eval --dataset ../shared/data/tweet_eval_emotion \\
        --output teacher_outputs.jsonl --max-length 96
    python label.py --teacher outputs/teacher_tweet_eval --dataset ../shared/data/tweets_unlabeled \\
        --output teacher_outputs.jsonl --max-length 96          # appends the transfer set's rows

Each line is one row (:func:`data.teacher_outputs.output_row`): ``text`` (and ``text_pair``), an id with
``--id-field``, and ``teacher_logits``. Every split of the data set is labelled unless ``--split`` names some. Rows
run through the teacher-logit store (:mod:`data.teacher_store`), so rows a run or an earlier call already labelled
cost nothing; ``--max-length`` must be the distillation run's ``data.max_length`` for the outputs to be the ones a
live teacher gives there.

Resumable: rows already in the output file (same text, or same id) are skipped, rows are appended in chunks that are
flushed to disk, and a line left half-written by an interrupted call is removed before appending. Bad flags are all
reported at once (:class:`LabelError`) before the teacher runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset
from tqdm.auto import tqdm

from common.errors import ProblemsError
from data.sources import DataError, detect_text_fields, load_source
from data.teacher_outputs import TEXT_KEYS, output_row, teacher_token_rows
from data.teacher_store import label_rows, model_fingerprint

#: Rows labelled and appended to the file at a time (what an interrupted call can lose).
CHUNK = 2048


class LabelError(ProblemsError):
    """Bad ``label.py`` flags: every problem found, listed in one message."""

    headline = "{n} problem(s) with the labelling flags"


def parser() -> argparse.ArgumentParser:
    """The flags of ``label.py``."""
    p = argparse.ArgumentParser(
        prog="label.py", description="Write a teacher's outputs for a data set (JSON Lines, resumable)."
    )
    p.add_argument("--teacher", required=True, help="fine-tuned teacher: folder, Hub name or alias")
    p.add_argument("--dataset", required=True, help="any data source the data module accepts (folder, file, Hub)")
    p.add_argument("--output", required=True, help="JSON Lines file to write (appended to when it exists)")
    p.add_argument("--subset", default=None, help="Hub dataset configuration, e.g. sst2 for glue")
    p.add_argument("--split", nargs="+", default=None, help="split(s) to label (default: every split)")
    p.add_argument("--text-fields", nargs="+", default=None, help="text column(s), one or a pair")
    p.add_argument("--id-field", default=None, help="id column written with each row (join by id)")
    p.add_argument("--max-length", type=int, default=128, help="truncation length: the run's data.max_length")
    p.add_argument("--batch-size", type=int, default=256, help="teacher batch size")
    p.add_argument("--device", default=None, help="where the teacher runs (default: cuda when available)")
    return p


def _existing_keys(path: Path, id_field: str | None) -> tuple[set, int]:
    """Keys of the rows already in the output file, after removing a half-written last line; and their count."""
    keys: set = set()
    if not path.is_file():
        return keys, 0
    with path.open("rb+") as handle:
        data = handle.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # an interrupted append: drop the partial line, it is labelled again
            handle.truncate(end)
    count = 0
    for line in data[:end].decode("utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        count += 1
        keys.add(row.get(id_field) if id_field else tuple(row.get(k) for k in TEXT_KEYS if k in row))
    return keys, count


def check(args: argparse.Namespace) -> tuple[Any, dict[str, Dataset], list[str], set, int]:
    """Check every flag and load teacher and data; raise :class:`LabelError` with every problem.

    Returns:
        The teacher, the splits to label, their text field(s), the keys already written and their count.
    """
    from helper.models import load_classifier

    problems = []
    for name in ("max_length", "batch_size"):
        value = getattr(args, name)
        if value < 1:
            problems.append(f"--{name.replace('_', '-')}={value}: expected a positive integer")
    output = Path(args.output)
    if not output.parent.is_dir():
        problems.append(f"--output={args.output!r}: folder {str(output.parent)!r} does not exist")
    teacher = None
    try:
        teacher = load_classifier(args.teacher, require_head=True)
    except (OSError, ValueError) as err:
        problems.append(f"--teacher={args.teacher!r}: {err}")
    splits: dict[str, Dataset] = {}
    fields: list[str] = []
    try:
        raw = load_source(args.dataset, args.subset)
        wanted = args.split or list(raw)
        missing = [s for s in wanted if s not in raw]
        if missing:
            problems.append(f"--split {missing} not found in --dataset={args.dataset!r}; its splits: {list(raw)}")
        splits = {s: raw[s] for s in wanted if s in raw}
        if splits:
            columns = next(iter(splits.values())).column_names
            fields = detect_text_fields(columns, args.text_fields)
            for split, rows in splits.items():
                lacking = [
                    f for f in (*fields, *([args.id_field] if args.id_field else [])) if f not in rows.column_names
                ]
                if lacking:
                    flag = "--id-field" if lacking == [args.id_field] else "--text-fields"
                    problems.append(
                        f"split {split!r} lacks column(s) {lacking} ({flag}); its columns: {rows.column_names}"
                    )
    except DataError as err:
        problems.extend(f"--dataset={args.dataset!r}: {p}" for p in err.problems)
    keys, count = set(), 0
    if output.parent.is_dir():
        try:
            keys, count = _existing_keys(output, args.id_field)
        except (ValueError, UnicodeDecodeError) as err:
            problems.append(f"--output={args.output!r} exists but is not a teacher-outputs JSON Lines file: {err}")
    if problems:
        raise LabelError(problems)
    return teacher, splits, fields, keys, count


def label(args: argparse.Namespace) -> dict[str, int]:
    """Label every row of the chosen splits that the output file lacks and append them; return counts by split."""
    import torch
    from transformers import AutoTokenizer

    teacher, splits, fields, done, already = check(args)
    tokenizer = AutoTokenizer.from_pretrained(teacher.name_or_path)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    todo: dict[str, list[int]] = {}
    for split, rows in splits.items():
        texts = list(zip(*(rows[f] for f in fields), strict=True))
        ids = rows[args.id_field] if args.id_field else [None] * len(rows)
        pending = []
        for i, (text, ident) in enumerate(zip(texts, ids, strict=True)):
            key = ident if args.id_field else text
            if key not in done:
                done.add(key)
                pending.append(i)
        todo[split] = pending
    total = sum(map(len, todo.values()))
    print(f"{already:,} row(s) already in {args.output}; {total:,} to label", file=sys.stderr)
    teacher_key = model_fingerprint(teacher)
    written: dict[str, int] = {}
    bar = tqdm(total=total, desc="Labelling", unit="rows")
    with open(args.output, "a", encoding="utf-8") as out:
        for split, pending in todo.items():
            rows = splits[split]
            written[split] = 0
            for start in range(0, len(pending), CHUNK):
                part = rows.select(pending[start : start + CHUNK])
                tokens = teacher_token_rows([part.select_columns(fields)], tokenizer, fields, args.max_length)
                logits, _ = label_rows(
                    teacher, tokens, args.batch_size, tokenizer.pad_token_id or 0, teacher_key, device, progress=False
                )
                texts = list(zip(*(part[f] for f in fields), strict=True))
                ids = part[args.id_field] if args.id_field else [None] * len(part)
                for text, ident, vector in zip(texts, ids, logits.tolist(), strict=True):
                    out.write(json.dumps(output_row(text, vector, ident, args.id_field or "id")) + "\n")
                out.flush()
                os.fsync(out.fileno())
                written[split] += len(part)
                bar.update(len(part))
    bar.close()
    return written


def label_word_logits(
    model: Any, tokenizer: Any, texts: Sequence[str], label_words: Sequence[str], prompt: str = "{text}\nLabel:"
) -> Any:
    """A language model's label distribution: normalised log-probabilities of the label words after a prompt.

    For each text, the causal LM scores every label word as a continuation of ``prompt`` (the sum of the
    log-probabilities of the word's tokens, read with a leading space); a log-softmax over the label words makes them
    a distribution, in log-space: what ``teacher_logits`` holds (:func:`data.teacher_outputs.output_row`).

    Args:
        model: A ``*ForCausalLM`` model.
        tokenizer: Its tokenizer.
        texts: The texts to label.
        label_words: One word (or phrase) per class, in the data's label order.
        prompt: The context, with ``{text}`` where the text goes.

    Returns:
        ``(len(texts), len(label_words))`` float32 log-probabilities (each row's exponentials sum to 1).
    """
    import torch

    targets = [tokenizer(" " + word, add_special_tokens=False)["input_ids"] for word in label_words]
    rows = []
    with torch.inference_mode():
        for text in texts:
            context = tokenizer(prompt.format(text=text), add_special_tokens=False)["input_ids"]
            scores = []
            for target in targets:
                ids = torch.tensor([context + target], device=model.device)
                logp = model(input_ids=ids).logits[0].float().log_softmax(-1)
                positions = torch.arange(len(context) - 1, len(context) + len(target) - 1, device=ids.device)
                scores.append(logp[positions, torch.tensor(target, device=ids.device)].sum())
            rows.append(torch.stack(scores).log_softmax(-1).cpu())
    return torch.stack(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``label.py``."""
    import datasets

    args = parser().parse_args(argv)
    datasets.disable_progress_bars()  # one progress bar: the rows labelled
    try:
        written = label(args)
    except LabelError as err:
        print(err, file=sys.stderr)
        return 2
    summary = ", ".join(f"{split}: {n:,}" for split, n in written.items())
    print(f"wrote {sum(written.values()):,} row(s) to {args.output} ({summary})")
    return 0
