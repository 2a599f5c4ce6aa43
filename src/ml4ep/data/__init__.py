"""ml4ep.data: shuffled batches from ROOT, HDF5 and Parquet files larger than memory.

>>> from ml4ep.data import BatchLoader
>>> loader = BatchLoader("data/*.root", tree="Events", columns=["pt", "eta"], target="label",
...                      batch_size=1024, seed=1, validation_split=0.2)
>>> for x, y in loader.train.torch(): ...

Reading needs the ``data`` extra (uproot, awkward, h5py, pyarrow): ``pip install 'ml4ep[data]'``.
"""

from .expr import FilterError
from .loader import BatchLoader, Dataset, Split
from .sources import DataError

__all__ = ["BatchLoader", "Dataset", "Split", "DataError", "FilterError"]
