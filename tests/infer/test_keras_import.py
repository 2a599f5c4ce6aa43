"""mi.compile of Keras 3 models (torch backend: no TensorFlow needed), exported by Keras's own ONNX export, compiled,
and compared with ``model.predict`` at batch sizes other than the example's."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

if "keras" not in sys.modules:
    os.environ["KERAS_BACKEND"] = "torch"  # before Keras is imported
keras = pytest.importorskip("keras")
pytest.importorskip("torch")
if keras.backend.backend() != "torch":
    pytest.skip(f"Keras was imported with the {keras.backend.backend()} backend before this module",
                allow_module_level=True)

import ml4ep.infer as mi  # noqa: E402
from ml4ep.errors import InputError  # noqa: E402

# Keras's predict (torch backend) converts torch tensors with np.asarray(copy=False), which NumPy 2 warns about
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
layers = keras.layers
BATCHES = (1, 7, 64)


def dense_sequential():
    return keras.Sequential([keras.Input((8,)), layers.Dense(16, activation="relu"), layers.Dense(8, activation="gelu"),
                             layers.Dense(3, activation="softmax")], name="dense_seq")


def two_inputs():
    a, b = keras.Input((4,), name="a"), keras.Input((3,), name="b")
    h = layers.Concatenate()([layers.Dense(8, activation="tanh")(a), b])
    return keras.Model([a, b], layers.Dense(2)(layers.LayerNormalization()(h)), name="two_inputs")


def conv():
    x = keras.Input((8, 8, 2))
    h = layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    h = layers.BatchNormalization()(h)
    h = layers.MaxPooling2D(2)(h)
    h = layers.Conv2D(6, 3, activation="relu")(h)
    return keras.Model(x, layers.Dense(5)(layers.Flatten()(h)), name="conv")


def attention():
    x = keras.Input((5, 8))
    h = layers.MultiHeadAttention(num_heads=2, key_dim=4)(x, x)
    h = layers.LayerNormalization()(x + h)
    h = layers.Dense(16, activation="relu")(h)
    return keras.Model(x, layers.Dense(1)(layers.GlobalAveragePooling1D()(h)), name="attention")


MODELS = {"dense_seq": dense_sequential, "two_inputs": two_inputs, "conv": conv, "attention": attention}
# Keras 3.15 exports a dynamic batch with the torch backend through TorchScript, which fails on its layer
# normalization (a shape list built from the traced shape): those models go through torch's dynamo exporter
EXPORTER = {"dense_seq": "keras-torch", "two_inputs": "dynamo", "conv": "keras-torch", "attention": "dynamo"}
_compiled: dict = {}


def _inputs(model, b: int, rng) -> list[np.ndarray]:
    return [rng.standard_normal((b, *t.shape[1:])).astype(np.float32) for t in model.inputs]


def _model(key: str):
    if key not in _compiled:
        keras.utils.set_random_seed(0)
        model = MODELS[key]()
        _compiled[key] = model, mi.compile(model)  # examples from the model's input shapes
    return _compiled[key]


@pytest.mark.parametrize("key", list(MODELS))
def test_model_matches_predict(key):
    model, m = _model(key)
    assert m.exporter == EXPORTER[key]
    rng = np.random.default_rng(1)
    for b in BATCHES:
        xs = _inputs(model, b, rng)
        want = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
        got = m(*xs)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(want).max())))


def test_example_inputs_and_static_shapes():
    keras.utils.set_random_seed(0)
    model = dense_sequential()
    x = np.random.default_rng(2).standard_normal((3, 8)).astype(np.float32)
    m = mi.compile(model, example_inputs=x, dynamic_axes=None, name="dense_static")
    np.testing.assert_allclose(m(x), model.predict(x, verbose=0), rtol=1e-4, atol=1e-5)
    with pytest.raises(InputError):
        m(np.zeros((4, 8), np.float32))
    with pytest.raises(InputError, match="not inputs of the model"):
        mi.compile(model, dynamic_axes={"nope": [0]})


class Unbuilt(keras.Model):
    def __init__(self):
        super().__init__()
        self.fc = layers.Dense(2)

    def call(self, x):
        return self.fc(x)


def test_unbuilt_model_refused():
    with pytest.raises(InputError, match="not built"):
        mi.compile(Unbuilt())
