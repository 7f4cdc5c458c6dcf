"""The teacher-logit store: a teacher's logits for tokenized rows, each row computed once, kept on disk.

A store is one file per teacher, ``<cache_root()>/teacher_logits/<model_fingerprint(teacher)>.pt``, mapping
:func:`row_digests` keys (a digest of a row's tokens) to the teacher's logits. Labelling a set of rows
(:func:`label_rows`) reads the rows already in the store and runs the teacher on the others only, in inference mode,
longest rows first, in large batches, with a progress bar; under ``torch.distributed`` each process labels its own
share of those rows and the shares are gathered, so every process ends with all the logits. New rows are merged into
the store under a file lock and the store is replaced atomically, so two runs filling the same store at once lose
nothing and a reader never sees a half-written file.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from filelock import FileLock
from torch.nn.utils.rnn import pad_sequence
from tqdm.auto import tqdm
from transformers import PreTrainedModel


def cache_root() -> Path:
    """Folder of the teacher-output cache (``$DISTILLER_CACHE`` or ``~/.cache/transformer_distiller``)."""
    return Path(os.environ.get("DISTILLER_CACHE", Path.home() / ".cache" / "transformer_distiller"))


def model_fingerprint(model: torch.nn.Module) -> str:
    """A digest of a model's config and every parameter and buffer (changes whenever the weights change)."""
    digest = hashlib.sha1()
    config = getattr(model, "config", None)
    if config is not None:
        digest.update(config.to_json_string(use_diff=False).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def store_path(teacher_key: str) -> Path:
    """The store file of the teacher whose :func:`model_fingerprint` is ``teacher_key``."""
    return cache_root() / "teacher_logits" / f"{teacher_key}.pt"


def row_digests(rows: Dataset) -> torch.Tensor:
    """One 63-bit digest per tokenized row, of its ``input_ids`` and ``token_type_ids``: its key in the teacher store.

    The tokens alone decide a teacher's output (the attention mask of an unpadded row is all ones), so the key does not
    depend on labels, on how the data were loaded or on the row's position.
    """
    return _digests(_token_columns(rows))


def _token_columns(rows: Dataset) -> dict[str, list[list[int]]]:
    """The rows' ``input_ids`` and (where present) ``token_type_ids`` as Python lists, read once."""
    columns = [c for c in ("input_ids", "token_type_ids") if c in rows.column_names]
    return rows.with_format(None).select_columns(columns)[:]


def _digests(data: dict[str, list[list[int]]]) -> torch.Tensor:
    """:func:`row_digests` of rows already read by :func:`_token_columns`."""
    keys = []
    for parts in zip(*(data[c] for c in ("input_ids", "token_type_ids") if c in data), strict=True):
        digest = hashlib.sha1()
        for part in parts:
            digest.update(np.asarray(part, dtype=np.int64).tobytes())
        keys.append(int.from_bytes(digest.digest()[:8], "little") >> 1)
    return torch.tensor(keys, dtype=torch.int64)


@dataclass
class LabelStats:
    """What one :func:`label_rows` call did.

    Attributes:
        rows: Rows asked for.
        from_store: Rows whose logits were read from the store.
        labelled: Distinct rows run through the teacher, all processes together.
        labelled_here: Of those, the rows this process ran.
        seconds: Wall time of this process's teacher pass (0 when it ran nothing).
    """

    rows: int
    from_store: int
    labelled: int
    labelled_here: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        """This process's labelling throughput (rows through the teacher per second)."""
        return self.labelled_here / self.seconds if self.seconds > 0 else 0.0

    def summary(self, what: str = "rows") -> str:
        """One line for the logs, e.g. ``teacher labels for 47,764 rows: 44,507 labelled (1,234 rows/s), ...``."""
        speed = f" ({self.rows_per_second:,.0f} rows/s on this process)" if self.labelled_here else ""
        return (
            f"teacher logits for {self.rows:,} {what}: {self.labelled:,} labelled by the teacher{speed}, "
            f"{self.from_store:,} read from the store"
        )


def _dist_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default ``torch.distributed`` group, ``(0, 1)`` outside one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _read_store(path: Path, num_labels: int) -> tuple[torch.Tensor, torch.Tensor]:
    if path.is_file():
        store = torch.load(path, weights_only=True)
        return store["keys"], store["logits"]
    return torch.empty(0, dtype=torch.int64), torch.empty(0, num_labels)


def _lookup(stored_keys: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(hit, pos)``: which ``keys`` are in the sorted ``stored_keys``, and where."""
    if len(stored_keys) == 0:
        return torch.zeros(len(keys), dtype=torch.bool), torch.zeros(len(keys), dtype=torch.int64)
    pos = torch.searchsorted(stored_keys, keys).clamp(max=len(stored_keys) - 1)
    return stored_keys[pos] == keys, pos


def merge_into_store(path: Path, keys: torch.Tensor, logits: torch.Tensor) -> int:
    """Add rows to a store file, losing nothing that another process added meanwhile.

    Under a file lock (``<path>.lock``) the store is read again, the rows it lacks are added and the file is
    replaced atomically (written to a temporary name, then renamed). Nothing is written when the store already holds
    every row.

    Args:
        path: The store file.
        keys: Distinct :func:`row_digests` keys.
        logits: Their logits, ``(len(keys), num_labels)``.

    Returns:
        How many rows were added.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        stored_keys, stored = _read_store(path, logits.shape[1])
        hit, _ = _lookup(stored_keys, keys)
        if bool(hit.all()):
            return 0
        new_keys, new = keys[~hit], logits[~hit]
        merged_keys, order = torch.sort(torch.cat([stored_keys, new_keys]))
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
        try:
            torch.save({"keys": merged_keys, "logits": torch.cat([stored, new])[order]}, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return len(new_keys)


@torch.inference_mode()
def label_rows(
    teacher: PreTrainedModel,
    rows: Dataset,
    batch_size: int = 256,
    pad_token_id: int = 0,
    teacher_key: str | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    desc: str = "Teacher labelling",
) -> tuple[torch.Tensor, LabelStats]:
    """The teacher's logits for tokenized rows, through the teacher's store, and what it took.

    Rows found in the store are read; the others (each distinct row once) run through the teacher in eval mode and
    inference mode, longest first, in batches of ``batch_size``, and are merged into the store
    (:func:`merge_into_store`). Under ``torch.distributed`` every process must call this with the same rows: each runs
    every ``world_size``-th of the missing rows (in length order, so the shares cost the same) and the shares are
    gathered with ``all_gather_object``. Any change to the teacher's weights or config is a new fingerprint, so a new
    store; a different tokenizer or ``max_length`` gives other tokens, so other keys.

    Args:
        teacher: The teacher classifier.
        rows: Tokenized, unpadded rows: ``input_ids`` and, where the model uses them, ``token_type_ids`` (the
            attention mask is built from each row's length).
        batch_size: Inference batch size.
        pad_token_id: The tokenizer's padding id.
        teacher_key: :func:`model_fingerprint` of the teacher, when the caller already has it.
        device: Where to run the teacher (default: where its parameters are); it is moved back afterwards.
        progress: Show a progress bar (rows, rows/s, ETA) while the teacher runs.
        desc: The progress bar's label.

    Returns:
        ``(len(rows), num_labels)`` float32 logits in the order of ``rows``, and the :class:`LabelStats`.
    """
    data = _token_columns(rows)
    keys = _digests(data)
    path = store_path(teacher_key or model_fingerprint(teacher))
    num_labels = teacher.config.num_labels
    rank, world = _dist_world()
    stored_keys, stored = _read_store(path, num_labels)
    out = torch.empty(len(keys), num_labels)
    hit, pos = _lookup(stored_keys, keys)
    if world > 1:  # every process takes process 0's view of the store, so the shares below agree
        seen = [hit]
        torch.distributed.broadcast_object_list(seen, src=0)
        if bool((seen[0] & ~hit).any()):  # added by another run after this process read the store: read it again
            stored_keys, stored = _read_store(path, num_labels)
            hit, pos = _lookup(stored_keys, keys)
        hit = seen[0]
    out[hit] = stored[pos[hit]]
    del stored_keys, stored
    missing = (~hit).nonzero().squeeze(1)
    stats = LabelStats(len(keys), int(hit.sum()), 0, 0, 0.0)
    if len(missing) == 0:
        return out, stats
    new_keys, inverse = torch.unique(keys[missing], return_inverse=True)
    first = torch.full((len(new_keys),), len(keys)).scatter_reduce(0, inverse, missing, reduce="amin")
    lengths = torch.as_tensor([len(data["input_ids"][i]) for i in first.tolist()], dtype=torch.int64)
    mine = torch.argsort(lengths, descending=True, stable=True)[rank::world]  # this process's share, by position
    start = time.perf_counter()
    logits = _run_teacher(teacher, data, first[mine].tolist(), batch_size, pad_token_id, device, progress, desc)
    seconds = time.perf_counter() - start
    new = torch.empty(len(new_keys), num_labels)
    if world > 1:
        shares: list = [None] * world
        torch.distributed.all_gather_object(shares, (mine, logits))
        for idx, part in shares:
            new[idx] = part
    else:
        new[mine] = logits
    out[missing] = new[inverse]
    merge_into_store(path, new_keys, new)
    stats.labelled, stats.labelled_here, stats.seconds = len(new_keys), len(mine), seconds
    return out, stats


def teacher_logits(
    teacher: PreTrainedModel,
    rows: Dataset,
    batch_size: int = 256,
    pad_token_id: int = 0,
    teacher_key: str | None = None,
) -> torch.Tensor:
    """:func:`label_rows` without the statistics and the progress bar: just the ``(len(rows), num_labels)`` logits."""
    return label_rows(teacher, rows, batch_size, pad_token_id, teacher_key, progress=False)[0]


def _run_teacher(
    teacher: PreTrainedModel,
    data: dict[str, list[list[int]]],
    indices: list[int],
    batch_size: int,
    pad_token_id: int,
    device: torch.device | str | None = None,
    progress: bool = False,
    desc: str = "Teacher labelling",
) -> torch.Tensor:
    """Logits of the rows ``indices`` of ``data`` (:func:`_token_columns`) from the teacher in eval mode, longest
    first, padded per batch."""
    was_training = teacher.training
    home = next(teacher.parameters()).device
    target = torch.device(device) if device is not None else home
    teacher.eval().to(target)
    lengths = torch.as_tensor([len(data["input_ids"][i]) for i in indices], dtype=torch.int64)
    order = torch.argsort(lengths, descending=True, stable=True)
    logits = torch.empty(len(indices), teacher.config.num_labels)
    bar = tqdm(total=len(indices), desc=desc, unit="rows", disable=not progress or len(indices) == 0, leave=False)
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size].tolist()
            batch = {
                c: pad_sequence(
                    [torch.as_tensor(values[indices[i]]) for i in idx],
                    batch_first=True,
                    padding_value=pad_token_id if c == "input_ids" else 0,
                ).to(target, non_blocking=True)
                for c, values in data.items()
            }
            width = batch["input_ids"].shape[1]
            batch["attention_mask"] = (torch.arange(width) < lengths[idx, None]).long().to(target, non_blocking=True)
            logits[idx] = teacher(**batch).logits.float().cpu()
            bar.update(len(idx))
    finally:
        bar.close()
        teacher.train(was_training).to(home)
    return logits
