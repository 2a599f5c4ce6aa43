"""Plots of ``ml4ep fastsim evaluate`` (mplhep style, reference vs generated with ratio panels) and the
``index.html`` that gathers them with the metrics."""

from __future__ import annotations

import html
import logging
import math
from pathlib import Path

import numpy as np

from .._optional import require

log = logging.getLogger(__name__)

MAX_LAYERS_SHOWN = 6
FAMILIES = [("e_layer", "E layer [MeV]", True), ("ec_eta", "centre of energy, eta [mm]", False),
            ("ec_phi", "centre of energy, phi [mm]", False), ("ec_r", "centre of energy, r [mm]", False),
            ("width_eta", "width, eta [mm]", False), ("width_phi", "width, phi [mm]", False),
            ("width_r", "width, r [mm]", False), ("sparsity", "sparsity", False)]


def _plt():
    mpl = require("matplotlib", "fastsim", "the evaluation plots")
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    hep = require("mplhep", "fastsim", "the evaluation plots")
    plt.style.use(hep.style.ROOT)
    # minor ticks off: a hundred panels with ROOT-style minor ticks take seconds to draw
    plt.rcParams.update({"font.size": 11, "figure.dpi": 80, "xtick.minor.visible": False,
                         "ytick.minor.visible": False})
    return plt


def _density(counts: np.ndarray, edges: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / (total * np.diff(edges)) if total > 0 else np.zeros_like(counts, dtype=float)


def _pair(fig, spec, counts_ref, counts_gen, edges, xlabel, logx, title, sp=None):
    """A histogram panel and its ratio panel in one cell of ``spec``."""
    inner = spec.subgridspec(2, 1, height_ratios=[3, 1], hspace=0.05)
    ax, rax = fig.add_subplot(inner[0]), fig.add_subplot(inner[1])
    d_ref, d_gen = _density(counts_ref, edges), _density(counts_gen, edges)
    ax.stairs(d_ref, edges, label="reference", color="black", fill=True, alpha=0.25)
    ax.stairs(d_gen, edges, label="generated", color="tab:red", lw=1.5)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(d_ref > 0, d_gen / d_ref, np.nan)
    rax.stairs(ratio, edges, color="tab:red")
    rax.axhline(1.0, color="black", lw=0.8)
    rax.set_ylim(0.5, 1.5)
    rax.set_ylabel("gen/ref", fontsize=9)
    rax.set_xlabel(xlabel, fontsize=10)
    ax.set_title(title + (f"  S={sp:.2g}" if sp is not None else ""), fontsize=10)
    ax.tick_params(labelbottom=False)
    if logx:
        ax.set_xscale("log")
        rax.set_xscale("log")
    rax.set_xlim(ax.get_xlim())
    return ax


def _layers_shown(geo, family: str, names) -> list[int]:
    ids = [lay.id for lay in geo.layers]
    have = [i for i in ids if f"{family}_{i}" in names]
    if len(have) <= MAX_LAYERS_SHOWN:
        return have
    pick = np.unique(np.linspace(0, len(have) - 1, MAX_LAYERS_SHOWN).round().astype(int))
    return [have[i] for i in pick]


def write(out: Path, geo, ref, gen, edges: dict, result: dict) -> list[str]:
    """Writes the PNG plots and ``index.html`` into ``out``; returns the PNG names."""
    pngs = write_plots(out, geo, ref.hist, gen.hist, ref.mean_shower, gen.mean_shower, edges,
                       result.get("separation_power", {}))
    write_index(out, result, pngs)
    return pngs


def write_plots(out: Path, geo, ref_hist, gen_hist, ref_mean, gen_mean, edges: dict, sp: dict) -> list[str]:
    """Writes the PNG plots (from the two samples' histograms and mean showers) into ``out``; returns their
    names."""
    out = Path(out)
    plt = _plt()
    written = []

    def save(fig, name):
        fig.savefig(out / name)
        plt.close(fig)
        written.append(name)

    # total energy ratio and the voxel spectrum
    fig = plt.figure(figsize=(11, 4.5))
    gs = fig.add_gridspec(1, 2, wspace=0.3)
    _pair(fig, gs[0], ref_hist.counts["e_ratio"], gen_hist.counts["e_ratio"], edges["e_ratio"],
          "E_tot / E_inc", False, "total energy", sp.get("e_ratio"))
    _pair(fig, gs[1], ref_hist.counts["voxel"], gen_hist.counts["voxel"], edges["voxel"],
          "voxel energy [MeV]", True, "voxel energies", sp.get("voxel"))
    fig.axes[0].legend(fontsize=9)
    save(fig, "energy_and_voxels.png")

    # per-layer families
    for family, xlabel, logx in FAMILIES:
        layers = _layers_shown(geo, family, edges)
        if not layers:
            continue
        cols = min(3, len(layers))
        rows = -(-len(layers) // cols)
        fig = plt.figure(figsize=(4.2 * cols, 3.6 * rows))
        gs = fig.add_gridspec(rows, cols, wspace=0.35, hspace=0.45)
        for k, lid in enumerate(layers):
            name = f"{family}_{lid}"
            _pair(fig, gs[k // cols, k % cols], ref_hist.counts[name], gen_hist.counts[name], edges[name],
                  xlabel, logx, f"layer {lid}", sp.get(name))
        fig.axes[0].legend(fontsize=8)
        save(fig, f"{family}.png")

    # separation power per layer, every family
    if sp:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for family, _, _ in FAMILIES:
            pts = sorted((int(k.rsplit("_", 1)[1]), v) for k, v in sp.items() if k.rsplit("_", 1)[0] == family)
            if pts:
                ax.plot([p[0] for p in pts], [max(p[1], 1e-7) for p in pts], marker="o", ms=3, label=family)
        ax.set_yscale("log")
        ax.set_xlabel("layer")
        ax.set_ylabel("separation power")
        ax.legend(fontsize=8, ncol=2)
        save(fig, "separation_power.png")

    # average showers
    save(_mean_showers(plt, geo, ref_mean, gen_mean), "mean_shower.png")
    return written


def _mean_showers(plt, geo, mean_ref, mean_gen):
    if geo.regular:
        n_l, n_a, n_r = geo.shape
        imgs = [m.reshape(n_l, n_a, n_r) for m in (mean_ref, mean_gen)]
        lr = [im.sum(axis=1) for im in imgs]  # (layer, r)
        ar = [im.sum(axis=0) for im in imgs]  # (alpha, r)
        fig, axes = plt.subplots(2, 3, figsize=(14, 8))
        vmax = max(lr[0].max(), lr[1].max(), 1e-12)
        for j, (img, title) in enumerate(zip(lr, ("reference", "generated"))):
            im = axes[0, j].imshow(np.log10(img.T + 1e-6 * vmax), origin="lower", aspect="auto", cmap="viridis",
                                   vmin=np.log10(1e-6 * vmax), vmax=np.log10(vmax))
            axes[0, j].set_title(f"{title}: mean E per (layer, r) [log10 MeV]", fontsize=10)
            axes[0, j].set_xlabel("layer")
            axes[0, j].set_ylabel("r bin")
        fig.colorbar(im, ax=axes[0, :2])
        with np.errstate(divide="ignore", invalid="ignore"):
            r1 = np.where(lr[0] > 0, lr[1] / lr[0], np.nan)
            r2 = np.where(ar[0] > 0, ar[1] / ar[0], np.nan)
        im = axes[0, 2].imshow(r1.T, origin="lower", aspect="auto", cmap="coolwarm", vmin=0.5, vmax=1.5)
        axes[0, 2].set_title("generated / reference", fontsize=10)
        axes[0, 2].set_xlabel("layer")
        fig.colorbar(im, ax=axes[0, 2])
        edges_r = geo.layers[0].r_edges
        alpha = np.linspace(-np.pi, np.pi, n_a + 1)
        vmax = max(ar[0].max(), ar[1].max(), 1e-12)
        for j, (img, title) in enumerate(zip(ar, ("reference", "generated"))):
            ax = axes[1, j]
            ax.remove()
            ax = fig.add_subplot(2, 3, 4 + j, projection="polar")
            ax.pcolormesh(alpha, edges_r, np.log10(img.T + 1e-6 * vmax), cmap="viridis",
                          vmin=np.log10(1e-6 * vmax), vmax=np.log10(vmax))
            ax.set_title(f"{title}: mean E per (alpha, r), all layers", fontsize=10)
            ax.set_xticklabels([])
        ax = axes[1, 2]
        im = ax.imshow(r2.T, origin="lower", aspect="auto", cmap="coolwarm", vmin=0.5, vmax=1.5)
        ax.set_title("generated / reference (alpha, r)", fontsize=10)
        ax.set_xlabel("alpha bin")
        ax.set_ylabel("r bin")
        fig.colorbar(im, ax=ax)
        return fig
    # irregular binnings: mean energy per voxel, layer by layer
    fig, ax = plt.subplots(figsize=(11, 4.5))
    x = np.arange(geo.n_voxels)
    ax.step(x, mean_ref, where="mid", color="black", label="reference")
    ax.step(x, mean_gen, where="mid", color="tab:red", label="generated")
    for o in geo.offsets[1:-1]:
        ax.axvline(o - 0.5, color="grey", lw=0.5)
    ax.set_yscale("log")
    ax.set_xlabel("voxel (layers separated by lines)")
    ax.set_ylabel("mean energy [MeV]")
    ax.legend()
    return fig


def headline(result: dict) -> list[tuple[str, str]]:
    """The headline numbers of an evaluation, those computed: the separation power of E_tot/E_inc and the mean
    over every histogram, FPD and KPD x 1e3, the classifiers' AUC; ``(label, HTML-escaped value)`` rows."""
    rows = []
    sp = result.get("separation_power") or {}
    if sp.get("e_ratio") is not None:
        rows.append(("separation power, E_tot / E_inc", f"{sp['e_ratio']:.3g}"))
    finite = [v for v in sp.values() if v is not None and math.isfinite(v)]
    if finite:
        rows.append((f"separation power, mean over {len(finite)} histograms", f"{np.mean(finite):.3g}"))
    for key, label in (("fpd", "FPD x 1e3"), ("kpd", "KPD x 1e3")):
        if key in result:
            rows.append((label, f"{result[key]['value_x1e3']:.4g} &plusmn; {result[key]['error_x1e3']:.2g}"))
    for key, label in (("classifier_low", "AUC, low-level classifier"),
                       ("classifier_high", "AUC, high-level classifier")):
        if key in result:
            rows.append((label, f"{result[key]['auc']:.4f}"))
    return rows


def _table(rows: list[tuple[str, str]], table_id: str) -> str:
    body = "\n".join(f"<tr><td>{html.escape(a)}</td><td>{b}</td></tr>" for a, b in rows)
    return f"<table id='{table_id}' border='1' cellpadding='4'>{body}</table>"


def write_index(out: Path, result: dict, pngs: list[str]) -> None:
    """``out/index.html``: the headline numbers first (:func:`headline`), then the sample sizes and the other
    metrics, then the plots."""
    rows = []
    for key in ("n_reference", "n_generated"):
        rows.append((key, str(result.get(key))))
    for key, label in (("classifier_low", "classifier, low-level"), ("classifier_high", "classifier, high-level")):
        if key in result:
            rows.append((label, f"AUC {result[key]['auc']:.4f}, JSD {result[key]['jsd']:.4f}"))
    for k, v in result.get("separation_power_summary", {}).items():
        rows.append((f"separation power, {k} (mean over layers)", f"{v:.3g}"))
    top = headline(result)
    top_html = f"<h2>Headline</h2>{_table(top, 'headline')}" if top else ""
    imgs = "\n".join(f'<h3>{html.escape(p[:-4])}</h3><img src="{html.escape(p)}" style="max-width:100%">' for p in pngs)
    title = f"ml4ep fastsim evaluate: {html.escape(str(result.get('generated')))} vs " \
            f"{html.escape(str(result.get('reference')))} ({html.escape(str(result.get('geometry')))})"
    (out / "index.html").write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"
        f"<h1>{title}</h1>{top_html}<h2>Details</h2>{_table(rows, 'details')}"
        f"<p>All metrics by name: <a href='metrics.json'>metrics.json</a></p>{imgs}</body></html>\n")
