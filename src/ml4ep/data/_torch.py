"""The PyTorch ``IterableDataset`` of a split; a module of its own (importing torch) so that worker
processes started with ``spawn`` can unpickle it by name."""

from __future__ import annotations

import torch


class TorchDataset(torch.utils.data.IterableDataset):
    """Batches of one epoch of a split; in a ``DataLoader`` each worker reads its own disjoint windows.

    Use ``DataLoader(ds, batch_size=None, num_workers=K)`` (batches are already formed) and call
    ``ds.set_epoch(e)`` before each epoch."""

    def __init__(self, split, as_dict: bool = False, epoch: int | None = None, skip: int = 0):
        super().__init__()
        self.split, self.as_dict = split, as_dict
        self.epoch = split.epoch if epoch is None else epoch
        self.skip = skip

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, n = (info.id, info.num_workers) if info is not None else (0, 1)
        skip = self.skip if n == 1 else 0
        for arrays in self.split._arrays(self.epoch, skip, self.as_dict, worker=worker, n_workers=n,
                                         track=info is None):
            yield self.split._pack(arrays, self.as_dict, torch.from_numpy)
