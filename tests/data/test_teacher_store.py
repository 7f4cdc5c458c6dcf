"""Tests for data.teacher_store with several processes: concurrent runs filling one store, DDP shares."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import pytest
import torch
from datasets import Dataset

from data.teacher_store import label_rows, merge_into_store, model_fingerprint, row_digests, store_path
from tests.tiny import tiny_bert

TIMEOUT_S = 120
pytestmark = pytest.mark.skipif(
    "fork" not in mp.get_all_start_methods(), reason="the processes are forked (fast: no second import of torch)"
)


def token_rows(start: int, stop: int) -> Dataset:
    """Rows of distinct token ids (no tokenizer needed): row ``i`` is ``[101, 1000 + i, ..., 102]``."""
    return Dataset.from_dict(
        {"input_ids": [[101, *range(1000 + i, 1003 + i + i % 5), 102] for i in range(start, stop)]}
    )


def teacher() -> torch.nn.Module:
    return tiny_bert(layers=1, hidden=16, heads=2, num_labels=3, seed=7)


def _fill(cache: str, start: int, stop: int, barrier, done) -> None:
    """A run that labels rows ``start..stop``; it starts its teacher pass only once the other run has read the store
    too, so both read it before either writes."""
    os.environ["DISTILLER_CACHE"] = cache
    torch.set_num_threads(1)
    model = teacher()
    ran: list[int] = []

    def wait_once(module, args, kwargs):
        if not ran:
            barrier.wait(TIMEOUT_S)
        ran.append(len(kwargs["input_ids"]))

    model.register_forward_pre_hook(wait_once, with_kwargs=True)
    _, stats = label_rows(model, token_rows(start, stop), batch_size=8, progress=False)
    done.put((start, stats.labelled))


def test_two_runs_filling_one_store_at_once_lose_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = mp.get_context("fork")
    barrier, done = ctx.Barrier(2), ctx.Queue()
    runs = [ctx.Process(target=_fill, args=(str(tmp_path), a, b, barrier, done)) for a, b in ((0, 30), (20, 50))]
    for run in runs:
        run.start()
    for run in runs:
        run.join(TIMEOUT_S)
    assert [run.exitcode for run in runs] == [0, 0]
    assert sorted(done.get(timeout=5) for _ in runs) == [(0, 30), (20, 30)]  # each ran its rows: the store was empty
    monkeypatch.setenv("DISTILLER_CACHE", str(tmp_path))
    model = teacher()
    store = torch.load(store_path(model_fingerprint(model)), weights_only=True)
    everything = token_rows(0, 50)
    assert sorted(store["keys"].tolist()) == sorted(row_digests(everything).tolist())  # both runs' rows are there
    logits, stats = label_rows(model, everything, progress=False)
    assert (stats.labelled, stats.from_store) == (0, 50)
    with torch.no_grad():
        row = everything.with_format("torch")[45]["input_ids"]
        torch.testing.assert_close(logits[45], model.eval()(input_ids=row[None]).logits[0], rtol=1e-4, atol=1e-5)
    assert sorted(p.name for p in store_path("x").parent.iterdir() if not p.name.endswith(".lock")) == [
        store_path(model_fingerprint(model)).name
    ]  # no temporary file left behind


def test_merge_keeps_rows_added_by_another_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTILLER_CACHE", str(tmp_path))
    path = store_path("k")
    assert merge_into_store(path, torch.tensor([5, 1]), torch.tensor([[5.0], [1.0]])) == 2
    assert merge_into_store(path, torch.tensor([3, 5]), torch.tensor([[3.0], [9.0]])) == 1  # 5 is kept as stored
    assert merge_into_store(path, torch.tensor([1, 3]), torch.tensor([[0.0], [0.0]])) == 0
    store = torch.load(path, weights_only=True)
    assert store["keys"].tolist() == [1, 3, 5] and store["logits"].squeeze(1).tolist() == [1.0, 3.0, 5.0]


def _ddp_rank(rank: int, world: int, cache: str, port: int, done) -> None:
    os.environ["DISTILLER_CACHE"] = cache
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        model = teacher()
        seen = []
        model.register_forward_pre_hook(lambda m, a, kw: seen.append(len(kw["input_ids"])), with_kwargs=True)
        rows = token_rows(0, 41)
        logits, stats = label_rows(model, rows.select([*range(41), 3]), batch_size=4, progress=False)
        done.put((rank, sum(seen), stats.labelled, stats.labelled_here, logits.tolist()))
    finally:
        torch.distributed.destroy_process_group()


def test_ddp_processes_label_their_own_shares(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = mp.get_context("fork")
    done = ctx.Queue()
    ranks = [ctx.Process(target=_ddp_rank, args=(r, 2, str(tmp_path), port, done)) for r in range(2)]
    for proc in ranks:
        proc.start()
    results = sorted(done.get(timeout=TIMEOUT_S) for _ in ranks)
    for proc in ranks:
        proc.join(TIMEOUT_S)
    assert [proc.exitcode for proc in ranks] == [0, 0]
    (_, ran0, total0, here0, logits0), (_, ran1, total1, here1, logits1) = results
    assert (ran0, ran1) == (21, 20) and (here0, here1) == (21, 20)  # 41 distinct rows, shared, none twice
    assert total0 == total1 == 41
    assert logits0 == logits1  # every process ends with every row's logits
    monkeypatch.setenv("DISTILLER_CACHE", str(tmp_path))
    model = teacher().eval()
    rows = token_rows(0, 41).with_format("torch")
    with torch.no_grad():
        for i in (0, 17, 40):
            expected = model(input_ids=rows[i]["input_ids"][None]).logits[0]
            torch.testing.assert_close(torch.tensor(logits0[i]), expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.tensor(logits0[41]), torch.tensor(logits0[3]))
    _, stats = label_rows(model, token_rows(0, 41), progress=False)
    assert stats.from_store == 41  # the store holds both shares
