"""A train DataLoader that resumes mid-epoch exactly where the interrupted run was.

Lightning saves `state_dict()` of every train loader that has one (checkpoint key
`loops.fit_loop.state_dict.combined_loader`) and calls `load_state_dict()` before it iterates again. The state here is
the shuffling generator's state at the start of the current epoch plus the number of batches handed out since:
resuming replays the same permutation and drops the batches already trained on by index, before any of them is loaded.

This relies on every random draw of an epoch happening before its first batch (true for torch's RandomSampler and the
DataLoader's worker base seed), so that at the end of an epoch the generator already holds the next epoch's start state.
"""

from __future__ import annotations

from typing import Any, Iterator

from torch.utils.data import DataLoader


class _SkipFirstBatches:
    """Wraps a batch sampler: its first iteration that actually runs drops `skip` batches of indices (later ones,
    e.g. the next epochs of persistent workers, are complete). Its length stays the full epoch, which is what
    Lightning's restored batch counters expect."""

    def __init__(self, batch_sampler: Any, skip: int):
        self.batch_sampler, self.skip = batch_sampler, skip

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[list[int]]:
        # the skip is consumed on the first next(), not on iter(): DataLoader iterators call iter() more than once
        skip, self.skip = self.skip, 0
        for i, batch in enumerate(self.batch_sampler):
            if i >= skip:
                yield batch


class ResumableDataLoader(DataLoader):
    """A DataLoader (same arguments) with the state Lightning needs to resume it mid-epoch."""

    _resume: dict | None = None  # state to continue from, set by load_state_dict, used by the next __iter__
    _skip = 0  # batches the iterator being created drops
    _batches_yielded = 0  # batches handed out in the current epoch
    _epoch_start_state = None  # the generator's state when the current epoch began

    @property
    def _index_sampler(self):  # DataLoader iterators read their batch sampler from here when they are created
        sampler = super()._index_sampler
        return _SkipFirstBatches(sampler, self._skip) if self._skip else sampler

    def __iter__(self):
        resume, self._resume = self._resume, None
        if resume and resume["generator"] is not None and self.generator is not None:
            self.generator.set_state(resume["generator"])
        self._epoch_start_state = None if self.generator is None else self.generator.get_state()
        self._skip = self._batches_yielded = resume["batches"] if resume else 0
        iterator = super().__iter__()
        self._skip = 0
        for batch in iterator:
            self._batches_yielded += 1
            yield batch

    def state_dict(self) -> dict:
        if self._batches_yielded >= len(self):  # epoch done: the next one starts from the generator's current state
            return {"generator": None if self.generator is None else self.generator.get_state(), "batches": 0}
        return {"generator": self._epoch_start_state, "batches": self._batches_yielded}

    def load_state_dict(self, state: dict) -> None:
        self._resume = state
