"""ml4ep.bdt: boosted decision trees from XGBoost (and, in progress, LightGBM, scikit-learn, TMVA and ONNX-ML)
in one forest IR, evaluated with NumPy.

>>> import ml4ep.bdt as mb
>>> forest = mb.load("model.json")       # XGBoost JSON or UBJSON
>>> p = forest.predict(X)                # same values and shape as the source library's predict
"""

from __future__ import annotations

import os

from .forest import Forest, ModelError, Tree

__all__ = ["Forest", "ModelError", "Tree", "from_xgboost", "load"]


def load(path: str | os.PathLike) -> Forest:
    """A model file, by its content: XGBoost JSON (``.json``) or UBJSON (``.ubj``)."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise ModelError(f"{p}: file not found")
    with open(p, "rb") as f:
        head = f.read(64)
    if p.endswith((".json", ".ubj")) or head[:1] == b"{":
        from .formats import xgboost

        return xgboost.load(p)
    raise ModelError(f"{p}: unknown model format (supported so far: XGBoost .json / .ubj)")


def from_xgboost(booster) -> Forest:
    """An ``xgboost.Booster``, ``XGBClassifier`` or ``XGBRegressor`` in memory."""
    from .formats import xgboost

    return xgboost.from_booster(booster)
