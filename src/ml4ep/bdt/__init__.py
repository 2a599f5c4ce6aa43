"""ml4ep.bdt: boosted decision trees and random forests from XGBoost, LightGBM, scikit-learn, TMVA and ONNX-ML
in one forest IR, evaluated with NumPy or as generated C++ (docs/bdt.md).

>>> import ml4ep.bdt as mb
>>> forest = mb.load("model.json")       # XGBoost JSON / UBJSON, LightGBM text, TMVA XML, .onnx
>>> forest = mb.from_sklearn(estimator)  # also from_xgboost(booster), from_lightgbm(booster)
>>> p = forest.predict(X)                # same values and shape as the source library's predict
>>> fast = forest.compile()              # the generated C++ behind the same predict
>>> forest.save("outdir", name="bdt")    # outdir/bdt.hpp for experiments' C++ code
"""

from __future__ import annotations

import os

from .forest import Forest, ModelError, Tree

__all__ = ["Forest", "ModelError", "Tree", "from_lightgbm", "from_sklearn", "from_xgboost", "load"]


def load(path: str | os.PathLike) -> Forest:
    """A model file, recognised by its content: XGBoost JSON or UBJSON, LightGBM text, ONNX-ML (``.onnx``),
    TMVA BDT weights (XML)."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise ModelError(f"{p}: file not found")
    with open(p, "rb") as f:
        head = f.read(64)
    if p.endswith(".onnx"):
        from .formats import onnx_ml

        return onnx_ml.load(p)
    if head.lstrip().startswith(b"<"):
        from .formats import tmva

        return tmva.load(p)
    if head.startswith(b"tree\n") or head.startswith(b"tree\r\n"):
        from .formats import lightgbm

        return lightgbm.load(p)
    if p.endswith((".json", ".ubj")) or head[:1] == b"{":
        from .formats import xgboost

        return xgboost.load(p)
    raise ModelError(f"{p}: unknown model format (supported: XGBoost .json / .ubj, LightGBM text models, "
                     "ONNX-ML TreeEnsemble .onnx, TMVA BDT .xml)")


def from_xgboost(booster) -> Forest:
    """An ``xgboost.Booster``, ``XGBClassifier`` or ``XGBRegressor`` in memory."""
    from .formats import xgboost

    return xgboost.from_booster(booster)


def from_lightgbm(booster) -> Forest:
    """A ``lightgbm.Booster``, ``LGBMClassifier`` or ``LGBMRegressor`` in memory."""
    from .formats import lightgbm

    return lightgbm.from_booster(booster)


def from_sklearn(estimator) -> Forest:
    """A fitted scikit-learn GradientBoosting, HistGradientBoosting, RandomForest, ExtraTrees or DecisionTree
    classifier or regressor (classifiers: ``predict_proba``'s values)."""
    from .formats import sklearn

    return sklearn.from_sklearn(estimator)
