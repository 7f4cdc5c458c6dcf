"""Batch order and loaders: the length-grouped distributed sampler and the loader Lightning resumes mid-epoch."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, DistributedSampler


class LengthGroupedSampler(DistributedSampler):
    """Orders indices so that consecutive batches hold examples of similar length, on one process or several.

    Training order: a seeded permutation is cut into chunks of ``global_batch * group_batches`` examples, each chunk
    is sorted by length and cut into global batches, and the batches are shuffled. Evaluation order
    (``shuffle=False``): all examples sorted by length, longest first, so the first batch shows the peak memory.

    A global batch holds ``batch_size * num_replicas`` examples and each process takes every ``num_replicas``-th of
    them, so with ``N`` processes of batch ``B`` the examples of each optimizer step are exactly those of one process
    with batch ``N * B``. Being a ``DistributedSampler``, Lightning uses it as it is under DDP instead of wrapping it.
    A short last global batch is shared as evenly as possible (a process that would get nothing repeats its first
    example) so every process runs the same number of steps.

    Args:
        lengths: Token count of every example.
        batch_size: Batch size of one process.
        shuffle: Training order (True) or length-sorted evaluation order (False).
        seed: Seed of the training order (combined with the epoch).
        group_batches: Global batches per length-sorted chunk.
        skip_batches: Asked when an epoch's iteration starts: batches of this epoch already trained (resuming).
        num_replicas: Number of processes.
        rank: This process's index.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        group_batches: int = 50,
        skip_batches: Callable[[], int] | None = None,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        self.lengths = torch.as_tensor(list(lengths))
        super().__init__(range(len(self.lengths)), num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.batch_size = batch_size
        self.group_batches = group_batches
        self.skip_batches = skip_batches

    @property
    def global_batch(self) -> int:
        """Examples per optimizer step across all processes."""
        return self.batch_size * self.num_replicas

    def __len__(self) -> int:
        full, rest = divmod(len(self.lengths), self.global_batch)
        return full * self.batch_size + (max(len(range(self.rank, rest, self.num_replicas)), 1) if rest else 0)

    def __iter__(self) -> Iterator[int]:
        order = self._order()
        skip = self.skip_batches() * self.global_batch if self.skip_batches is not None else 0
        mine = []
        for start in range(skip, len(order), self.global_batch):
            batch = order[start : start + self.global_batch]
            mine.extend(batch[self.rank :: self.num_replicas] or batch[:1])
        return iter(mine)

    def _order(self) -> list[int]:
        if not self.shuffle:
            return torch.argsort(self.lengths, descending=True, stable=True).tolist()
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(len(self.lengths), generator=gen)
        chunk = self.global_batch * self.group_batches
        batches = []
        for start in range(0, len(perm), chunk):
            part = perm[start : start + chunk]
            part = part[torch.argsort(self.lengths[part], descending=True, stable=True)]
            batches.extend(part.split(self.global_batch))
        short = [batches.pop()] if len(batches[-1]) < self.global_batch else []  # kept last: batches stay aligned
        order = torch.randperm(len(batches), generator=gen).tolist()
        return torch.cat([batches[i] for i in order] + short).tolist()


class ResumableDataLoader(DataLoader):
    """A training loader that Lightning may resume in the middle of an epoch.

    It keeps no position of its own: its :class:`LengthGroupedSampler` asks the trainer's restored progress how many
    batches of the epoch were already trained and skips them. Counting the batches handed out instead would be off by
    the one batch Lightning fetches ahead. The empty ``state_dict``/``load_state_dict`` pair is Lightning's marker for
    a resumable loader.
    """

    def state_dict(self) -> dict:
        """Nothing to store (the position comes from the trainer's progress)."""
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        """Nothing to restore (see the class docstring)."""
