"""ml4ep.data end to end: signal and background in separate ROOT files -> shuffled batches -> a PyTorch
classifier, with a validation split, a filter and a padded jet collection.

    python examples/data_demo.py [--events 200000] [--epochs 3]

The files are written here with uproot (a toy: signal jets are harder and more central); in real use they are
your experiment's ntuples.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import awkward as ak
import numpy as np
import torch
import uproot

from ml4ep.data import BatchLoader, Dataset


def write_sample(path: Path, n: int, signal: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    njet = rng.poisson(4.0 if signal else 2.5, n)
    scale = 60.0 if signal else 35.0
    jet_pt = ak.unflatten(rng.exponential(scale, int(njet.sum())).astype(np.float32), njet)
    with uproot.recreate(path, compression=uproot.LZ4(1)) as f:
        f.mktree("Events", {"met": np.float32, "ht": np.float32, "lep_eta": np.float32, "njet": np.int32,
                            "jet_pt": jet_pt.type})
        f["Events"].extend({
            "met": rng.exponential(50.0 if signal else 30.0, n).astype(np.float32),
            "ht": ak.to_numpy(ak.sum(jet_pt, axis=1)).astype(np.float32),
            "lep_eta": rng.normal(0.0, 1.0 if signal else 1.6, n).astype(np.float32),
            "njet": njet.astype(np.int32),
            "jet_pt": jet_pt,
        })


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000, help="background events (signal: a quarter)")
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        write_sample(d / "signal.root", args.events // 4, True, 1)
        for i in range(2):
            write_sample(d / f"background_{i}.root", args.events // 2, False, 2 + i)

        loader = BatchLoader(
            [Dataset(d / "signal.root", constants={"label": np.float32(1)}),
             Dataset(str(d / "background_*.root"), constants={"label": np.float32(0)})],
            tree="Events", columns=["met", "ht", "lep_eta", "njet", "jet_pt"], target="label",
            filter="abs(lep_eta) < 2.5", max_vec_sizes={"jet_pt": 6}, vec_mask=True,
            dtype="float32", batch_size=512, seed=1, validation_split=0.2)
        print(f"features ({len(loader.feature_names)}): {', '.join(loader.feature_names)}")
        print(f"entries per epoch: train {loader.train.num_entries}, validation {loader.validation.num_entries}")

        n_in = len(loader.feature_names)
        model = torch.nn.Sequential(torch.nn.LayerNorm(n_in), torch.nn.Linear(n_in, 64), torch.nn.ReLU(),
                                    torch.nn.Linear(64, 1))
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        for epoch in range(args.epochs):
            t0 = time.perf_counter()
            model.train()
            fractions = []
            for x, y in loader.train.torch():
                fractions.append(float(y.mean()))
                opt.zero_grad()
                loss = loss_fn(model(torch.log1p(x.clamp(min=0)) * torch.sign(x)).squeeze(1), y)
                loss.backward()
                opt.step()
            model.eval()
            correct = total = 0
            with torch.no_grad():
                for x, y in loader.validation.torch():
                    pred = model(torch.log1p(x.clamp(min=0)) * torch.sign(x)).squeeze(1) > 0
                    correct += int((pred == (y > 0.5)).sum())
                    total += len(y)
            print(f"epoch {epoch}: loss {loss.item():.3f}, validation accuracy {correct / total:.3f}, "
                  f"signal fraction per batch {np.mean(fractions):.3f} +- {np.std(fractions):.3f}, "
                  f"{time.perf_counter() - t0:.1f} s")
        assert correct / total > 0.75, "the toy classifier should separate signal from background"


if __name__ == "__main__":
    main()
