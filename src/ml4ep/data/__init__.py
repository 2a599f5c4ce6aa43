"""ml4ep.data: shuffled batches from ROOT, HDF5 and Parquet files larger than memory.

>>> from ml4ep.data import BatchLoader
>>> loader = BatchLoader("data/*.root", tree="Events", columns=["pt", "eta"], target="label",
...                      batch_size=1024, seed=1, validation_split=0.2)
>>> for x, y in loader.train.torch(): ...

Reading needs the ``data`` extra (uproot, awkward, h5py, pyarrow): ``pip install 'ml4ep[data]'``.

The modules, in the order a batch goes through them (docs/data.md, docs/architecture.md):

- ``loader.py``: :class:`BatchLoader` (its ``train`` and ``validation`` splits, each a :class:`Split`),
  :class:`Dataset` (files, optionally with their own entry range and constant columns such as a label); the
  pipeline is readable top to bottom there;
- ``sources/``: one reader per format behind one interface (``root.py``: TTree and RNTuple through uproot;
  ``hdf5.py``; ``parquet.py``), :class:`DataError`;
- ``expr.py``: the ``filter=`` language (parsed by :mod:`ast`, whitelisted, never ``eval``), :class:`FilterError`;
- ``plan.py``: files cut into chunks, the train/validation split, each epoch's order, the ranks' shares;
- ``pipeline.py``: reading, filtering and shuffling parts in background threads, windows, batches;
- ``adapters.py``: the same batches as PyTorch tensors, a ``tf.data.Dataset`` or JAX arrays (``_torch.py``: the
  PyTorch ``IterableDataset``, a module of its own for spawned workers).

``ml4ep data inspect FILES`` (:mod:`ml4ep.cli`) lists the entries and columns of files and which can be batched.
"""

from .expr import FilterError
from .loader import BatchLoader, Dataset, Split
from .sources import DataError

__all__ = ["BatchLoader", "Dataset", "Split", "DataError", "FilterError"]
