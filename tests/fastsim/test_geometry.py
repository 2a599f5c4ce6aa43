"""The CaloChallenge binnings and user-defined ones, against the numbers of the challenge's description."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ml4ep.fastsim.geometry import BUILTIN, Geometry, GeometryError, get


@pytest.mark.parametrize("name,voxels,layers,alpha_layers", [
    ("ds1-photons", 368, [0, 1, 2, 3, 12], [1, 2]),
    ("ds1-pions", 533, [0, 1, 2, 3, 12, 13, 14], [1, 2, 4, 5]),
    ("ds2", 6480, list(range(45)), list(range(45))),
    ("ds3", 40500, list(range(45)), list(range(45))),
])
def test_builtin_binnings(name, voxels, layers, alpha_layers):
    geo = get(name)
    assert geo.n_voxels == voxels and geo.layer_ids == layers and geo.alpha_layers == alpha_layers
    assert len(geo.r_centres) == len(geo.eta_centres) == len(geo.voxel_layer) == voxels


def test_ds1_offsets_and_thresholds():
    assert list(get("ds1-photons").offsets) == [0, 8, 168, 358, 363, 368]
    assert list(get("ds1-pions").offsets) == [0, 8, 108, 208, 213, 363, 523, 533]
    assert get("ds1-photons").threshold == 1.0
    assert get("ds2").threshold == pytest.approx(0.5e-3 / 0.033)
    assert get("ds2").z_cell_mm == 3.4


def test_ds2_ds3_index_formula_and_centres():
    for name, n_a, n_r, dr in (("ds2", 16, 9, 4.65), ("ds3", 50, 18, 2.325)):
        geo = get(name)
        assert geo.shape == (45, n_a, n_r)
        rng = np.random.default_rng(0)
        lay, a, r = rng.integers(45, size=50), rng.integers(n_a, size=50), rng.integers(n_r, size=50)
        idx = geo.voxel(lay, a, r)
        np.testing.assert_array_equal(idx, lay * n_a * n_r + a * n_r + r)  # the README's formula
        for got, want in zip(geo.unravel(idx), (lay, a, r)):
            np.testing.assert_array_equal(got, want)
        # centres: r midpoints of dr-wide bins, alpha centred in [-pi, pi), eta = r cos(alpha), phi = r sin(alpha)
        np.testing.assert_allclose(geo.r_centres[idx], (r + 0.5) * dr, rtol=1e-12)
        alpha = -np.pi + (a + 0.5) * 2 * np.pi / n_a
        np.testing.assert_allclose(geo.eta_centres[idx], (r + 0.5) * dr * np.cos(alpha), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(geo.phi_centres[idx], (r + 0.5) * dr * np.sin(alpha), rtol=1e-12, atol=1e-12)
        assert geo.layers[-1].r_edges[-1] == pytest.approx(41.85)


def test_irregular_layer_indexing():
    geo = get("ds1-pions")
    # layer 12 (position 4): 15 r bins, 10 alpha bins, starting at voxel 213
    assert geo.voxel(4, 3, 7) == 213 + 3 * 15 + 7
    assert geo.unravel([213 + 3 * 15 + 7]) == ([4], [3], [7])
    assert geo.alpha_centres[0] == 0.0  # unbinned layer: alpha 0
    with pytest.raises(GeometryError, match="out of range"):
        geo.voxel(0, 1, 0)  # layer 0 has a single alpha bin
    with pytest.raises(GeometryError, match="not a 3-D|different binnings"):
        _ = geo.shape


def test_par04_order_round_trip():
    geo = get("ds2")
    rng = np.random.default_rng(1)
    mesh = rng.random((3, 9, 16, 45))  # (N, r, phi, z)
    flat = geo.from_par04(mesh)
    # independent: element (n, r, a, z) lands at z*144 + a*9 + r
    for n, r, a, z in ((0, 0, 0, 0), (1, 8, 15, 44), (2, 3, 7, 20)):
        assert flat[n, z * 144 + a * 9 + r] == mesh[n, r, a, z]
    np.testing.assert_array_equal(geo.to_par04(flat), mesh)
    with pytest.raises(GeometryError, match="Par04 mesh"):
        geo.from_par04(mesh[:, :8])


def test_user_binning_files(tmp_path):
    spec = {"name": "mini", "voxel_threshold_MeV": 0.5, "z_cell_mm": 2.0,
            "layers": [{"id": 0, "r_edges_mm": [0, 1, 3], "n_alpha": 4}, {"repeat": 2},
                       {"id": 5, "r_edges_mm": [0, 10], "n_alpha": 1}]}
    (tmp_path / "mini.json").write_text(json.dumps(spec))
    geo = get(tmp_path / "mini.json")
    assert isinstance(geo, Geometry) and geo.name == "mini"
    assert geo.layer_ids == [0, 1, 2, 5] and geo.n_voxels == 3 * 8 + 1 and geo.threshold == 0.5
    (tmp_path / "mini.yaml").write_text(
        "layers:\n  - {id: 0, r_edges_mm: [0, 1, 3], n_alpha: 4}\n  - {id: 1, r_edges_mm: [0, 5], n_alpha: 1}\n")
    assert get(tmp_path / "mini.yaml").n_voxels == 9
    assert get(spec).n_voxels == 25


@pytest.mark.parametrize("content,match", [
    ("{not json", "not valid JSON"),
    ('{"layers": [{"id": 0, "r_edges_mm": [1, 2], "n_alpha": 1}]}', "start at 0"),
    ('{"layers": [{"id": 0, "r_edges_mm": [0, 2, 1], "n_alpha": 1}]}', "increase"),
    ('{"layers": [{"id": 1, "r_edges_mm": [0, 2]}, {"id": 0, "r_edges_mm": [0, 2]}]}', "ids must increase"),
    ('{"layers": [{"id": 0, "n_alpha": 3}]}', "malformed layer"),
    ('{"name": "x"}', "no 'layers'"),
    ('{"layers": [{"id": 0, "r_edges_mm": [0, 2]}], "n_voxels": 7}', "says 7"),
])
def test_bad_binning_files(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(GeometryError, match=match):
        get(path)


def test_unknown_geometry():
    with pytest.raises(GeometryError, match="unknown geometry 'ds9'"):
        get("ds9")
    assert set(BUILTIN) == {"ds1-photons", "ds1-pions", "ds2", "ds3"}
