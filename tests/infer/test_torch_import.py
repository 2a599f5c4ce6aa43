"""mi.compile of torch nn.Modules: exported by torch (dynamo, TorchScript as the fallback), compiled, and compared with
the module's own outputs at batch sizes other than the example's."""

from __future__ import annotations

import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")  # the dynamo exporter's ONNX functions

import ml4ep.infer as mi  # noqa: E402
from ml4ep.errors import InputError  # noqa: E402
from ml4ep.infer.torch_import import ExportError, ExportInfo, MismatchError, verify  # noqa: E402

nn = torch.nn
F = torch.nn.functional
BATCHES = (1, 7, 64)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 3))

    def forward(self, x):
        return self.net(x)


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 8, 3)
        self.head = nn.Linear(8, 5)
        with torch.no_grad():  # running statistics that are not the identity: buffers, which must become weights
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)

    def forward(self, image):
        h = F.max_pool2d(F.relu(self.bn(self.conv1(image))), 2)
        h = F.relu(self.conv2(h))
        return self.head(h.mean(dim=(2, 3)))


class GNN(nn.Module):
    """Message passing on a fixed graph: gather the source nodes, scatter-add the messages into the targets."""

    def __init__(self, n_nodes: int = 6, features: int = 4, hidden: int = 16):
        super().__init__()
        src = torch.tensor([0, 1, 2, 3, 4, 5, 0, 2, 4, 1])
        dst = torch.tensor([1, 2, 3, 4, 5, 0, 3, 5, 1, 4])
        self.register_buffer("src", src)
        self.register_buffer("dst", dst)
        deg = torch.zeros(n_nodes).index_add_(0, dst, torch.ones(len(dst))).clamp(min=1)
        self.register_buffer("inv_deg", (1.0 / deg).view(1, n_nodes, 1))
        self.embed = nn.Linear(features, hidden)
        self.msg = nn.ModuleList([nn.Linear(2 * hidden, hidden) for _ in range(2)])
        self.head = nn.Linear(hidden, 2)

    def forward(self, nodes):
        h = F.relu(self.embed(nodes))  # (B, N, H)
        for lin in self.msg:
            m = F.relu(lin(torch.cat([h[:, self.src], h[:, self.dst]], dim=-1)))  # (B, E, H)
            index = self.dst.view(1, -1, 1).expand(m.shape[0], -1, m.shape[2])
            agg = torch.zeros_like(h).scatter_add(1, index, m)
            h = h + agg * self.inv_deg
        return self.head(h.mean(dim=1))


class Encoder(nn.Module):
    """A transformer encoder over padded sequences: the padding mask is an input."""

    def __init__(self, d: int = 16):
        super().__init__()
        self.embed = nn.Linear(3, d)
        layer = nn.TransformerEncoderLayer(d, nhead=2, dim_feedforward=32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(d, 1)

    def forward(self, x, padding_mask):
        h = self.encoder(self.embed(x), src_key_padding_mask=padding_mask)
        keep = (~padding_mask).unsqueeze(-1).to(h.dtype)
        return self.head((h * keep).sum(1) / keep.sum(1))


class LSTMNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 8, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, seq):
        out, (h, _c) = self.lstm(seq)
        return self.head(h[-1]), out  # two outputs


class Custom(nn.Module):
    """A residual block of our own with LayerNorm and both GELUs."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(10, 24)
        self.norm = nn.LayerNorm(24)
        self.fc2 = nn.Linear(24, 10)
        self.scale = nn.Parameter(torch.full((10,), 0.5))

    def forward(self, x):
        h = F.gelu(self.norm(self.fc1(x)))
        return x + self.scale * F.gelu(self.fc2(h), approximate="tanh")


class PyScale(nn.Module):
    """Reads a parameter's values in Python (``.numpy()``): torch.export cannot, the TorchScript tracer makes them a
    constant (right for this module's weights)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        scale = float(np.abs(self.fc.weight.detach().numpy()).max())
        return self.fc(x) / scale


def _seq_mask(b: int, length: int = 5) -> torch.Tensor:
    lengths = torch.arange(b) % length + 1  # 1..length valid entries per row: never a row of padding only
    return torch.arange(length)[None, :] >= lengths[:, None]


INPUTS = {
    "mlp": (MLP, lambda b: (torch.randn(b, 8),)),
    "cnn": (CNN, lambda b: (torch.randn(b, 2, 8, 8),)),
    "gnn": (GNN, lambda b: (torch.randn(b, 6, 4),)),
    "encoder": (Encoder, lambda b: (torch.randn(b, 5, 3), _seq_mask(b))),
    "lstm": (LSTMNet, lambda b: (torch.randn(b, 6, 4),)),
    "custom": (Custom, lambda b: (torch.randn(b, 10),)),
}
EXPORTER = {"mlp": "dynamo", "cnn": "dynamo", "gnn": "dynamo", "encoder": "dynamo", "lstm": "dynamo",
            "custom": "dynamo"}
_compiled: dict = {}


def _model(key: str):
    """The module and its compiled model (compiled once per test session)."""
    if key not in _compiled:
        cls, make = INPUTS[key]
        torch.manual_seed(0)
        module = cls().eval()
        _compiled[key] = module, mi.compile(module, example_inputs=make(5))
    return _compiled[key]


@pytest.mark.parametrize("key", list(INPUTS))
def test_module_matches_torch(key):
    module, m = _model(key)
    assert m.exporter == EXPORTER[key]
    assert m.name == type(module).__name__
    make = INPUTS[key][1]
    torch.manual_seed(1)
    for b in BATCHES:  # the example had 5 rows
        args = make(b)
        with torch.no_grad():
            want = module(*args)
        want = [w.numpy() for w in (want if isinstance(want, tuple) else (want,))]
        got = m(*(a.numpy() for a in args))
        got = list(got) if isinstance(got, tuple) else [got]
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(w).max())))


def test_inputs_outputs_and_weights():
    module, m = _model("encoder")
    assert m.input_names == ["x", "padding_mask"]  # forward's parameter names
    _, lstm = _model("lstm")
    assert lstm.output_names == ["output_0", "output_1"]
    from ml4ep.infer.torch_import import to_onnx

    torch.manual_seed(0)
    gnn = GNN().eval()
    for exporter in ("dynamo", "torchscript"):
        proto, info = to_onnx(gnn, (torch.randn(3, 6, 4),), exporter=exporter)
        inits = {t.name for t in proto.graph.initializer}
        assert [i.name for i in proto.graph.input] == ["nodes"]  # parameters and buffers are not inputs
        assert {"inv_deg", "head.weight", "head.bias"} <= inits  # a buffer and parameters: initializers
        dims = proto.graph.input[0].type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [6, 4]
        assert [d.dim_param for d in proto.graph.output[0].type.tensor_type.shape.dim] == ["batch", ""]
        assert info.exporter == exporter
        assert len(info.examples) == 2 and info.examples[1]["nodes"].shape[0] == 7  # a second batch size is checked


def test_fallback_to_torchscript(caplog):
    torch.manual_seed(0)
    module = PyScale().eval()
    with caplog.at_level(logging.INFO, logger="ml4ep.infer.torch_import"):
        m = mi.compile(module, example_inputs=(torch.randn(4, 4),))
    assert m.exporter == "torchscript"
    assert any("dynamo" in r.getMessage() for r in caplog.records)
    x = np.random.default_rng(0).standard_normal((9, 4)).astype(np.float32)
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(m(x), want, rtol=1e-5, atol=1e-6)


def test_static_shapes_and_batch_one_example():
    torch.manual_seed(0)
    module = Custom().eval()
    m = mi.compile(module, example_inputs=(torch.randn(1, 10),), dynamic_axes=None, name="custom_static")
    assert m.name == "custom_static"
    x = torch.randn(1, 10)
    with torch.no_grad():
        np.testing.assert_allclose(m(x.numpy()), module(x).numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(InputError):
        m(np.zeros((2, 10), np.float32))  # the shape is fixed
    m1 = mi.compile(module, example_inputs=(torch.randn(1, 10),))  # a batch of 1 still gives a dynamic batch
    x = torch.randn(6, 10)
    with torch.no_grad():
        np.testing.assert_allclose(m1(x.numpy()), module(x).numpy(), rtol=1e-4, atol=1e-5)


def test_refusals():
    module = MLP()  # training mode
    with pytest.raises(InputError, match=r"training mode.*\.eval\(\)"):
        mi.compile(module, example_inputs=(torch.randn(2, 8),))
    module.eval()
    with pytest.raises(InputError, match="example_inputs"):
        mi.compile(module)
    with pytest.raises(InputError, match="neither inputs nor outputs"):
        mi.compile(module, example_inputs=(torch.randn(2, 8),), dynamic_axes={"y": {0: "N"}})
    with pytest.raises(InputError, match="ONNX model"):
        mi.compile(b"not onnx", example_inputs=(np.zeros(2),))


class Eig(nn.Module):
    def forward(self, x):
        return torch.linalg.eigvals(x).real


def test_unexportable_module():
    with pytest.raises(ExportError, match=r"Eig: torch's dynamo exporter failed: .*linalg_eig(.|\n)*torchscript exporter failed: .*linalg_eigvals"):
        mi.compile(Eig().eval(), example_inputs=(torch.randn(2, 3, 3),))


class _Fake:
    output_names = ["y"]

    def __init__(self, out):
        self.out = out

    def run(self, feeds):
        return {"y": self.out}


def test_verify_names_output_and_difference():
    ref = np.array([[1.0, 2.0, 3.0]], np.float32)
    info = ExportInfo("dynamo", "Net", ["x"], ["y"], [{"x": ref}], lambda f: [f["x"] * 2])
    verify(_Fake(ref * 2 + 1e-6), info)  # within the tolerance
    bad = ref * 2
    bad[0, 1] += 0.01
    with pytest.raises(MismatchError, match=r"Net: output 'y' differs .* by up to 0\.01 at index \(0, 1\)"):
        verify(_Fake(bad), info)
    with pytest.raises(MismatchError, match="shape"):
        verify(_Fake(ref[:, :2]), info)
