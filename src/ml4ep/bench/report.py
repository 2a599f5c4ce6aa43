"""What a benchmark run gives: the terminal table, the JSON file, the markdown section and the bar charts.

Per model and backend: the load time (code generation and compilation included for compiling engines) and the
first call; for the first batch size the median latency of one call with its spread (half the interquartile
range, in % of the median), for the other batch sizes the throughput (samples per second at the median); the
speed relative to onnxruntime on one thread (the anchor, > 1: faster); the peak resident memory of the process
and the model's own memory (the peak minus the resident memory before the model was loaded, with the feeds of
every batch already made). Backends that could not run say why.
"""

from __future__ import annotations

import json
from pathlib import Path

ANCHOR = "onnxruntime"


def _fmt(v: float, digits: int = 3) -> str:
    if v >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def _rows(entry: dict, batches: list[int]) -> list[list[str]]:
    anchor = entry["backends"].get(ANCHOR, {})
    rows = []
    for name, r in entry["backends"].items():
        if r.get("status") != "ok":
            rows.append([name, r.get("status", "?"), (r.get("reason") or "").splitlines()[0][:110]])
            continue
        cells = [name, "ok", _fmt(r.get("build_s", 0.0) + r.get("load_s", 0.0)), _fmt(r.get("first_s", 0.0))]
        for i, b in enumerate(batches):
            s = r["batches"][str(b)]
            if i == 0:
                spread = (s["q75_ms"] - s["q25_ms"]) / 2 / s["median_ms"] * 100
                cells.append(f"{_fmt(s['median_ms'])} ±{spread:.0f}%")
            else:
                cells.append(_fmt(s["per_s"]))
            a = anchor.get("batches", {}).get(str(b)) if anchor.get("status") == "ok" else None
            cells.append(f"{a['median_ms'] / s['median_ms']:.2f}" if a else "-")
        cells += [_fmt(r["peak_mb"]), _fmt(r["model_mb"])]
        rows.append(cells)
    return rows


def _header(batches: list[int]) -> list[str]:
    cols = ["backend", "status", "load s", "1st call s"]
    for i, b in enumerate(batches):
        cols += [f"b={b} ms/call" if i == 0 else f"b={b} /s", f"b={b} x ORT"]
    return cols + ["peak MB", "model MB"]


def table(report: dict) -> str:
    """The terminal table, one block per model."""
    batches = report["config"]["batches"]
    head = _header(batches)
    lines = []
    for name, entry in report["models"].items():
        lines.append(f"\n{name}: {entry['description']} ({entry['parameters']:,} parameters)")
        rows = _rows(entry, batches)
        ok = [r for r in rows if len(r) == len(head)]
        widths = [max([len(head[i]), *(len(r[i]) for r in ok)]) for i in range(len(head))]  # ok may be empty
        lines.append("  ".join(h.rjust(w) for h, w in zip(head, widths)))
        for r in rows:
            if len(r) == len(head):
                lines.append("  ".join(c.rjust(w) for c, w in zip(r, widths)))
            else:
                lines.append(f"{r[0].rjust(widths[0])}  {r[1]}: {r[2]}")
    return "\n".join(lines)


def write_json(report: dict, path) -> None:
    Path(path).write_text(json.dumps(report, indent=1))


def charts(report: dict, directory) -> dict[str, Path]:
    """One PNG of bar charts per model: latency at the first batch size, throughput at the others, memory;
    the error bars span the interquartile range of the blocks. Returns {model: path}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    batches = report["config"]["batches"]
    out = {}
    for name, entry in report["models"].items():
        ok = {b: r for b, r in entry["backends"].items() if r.get("status") == "ok"}
        if not ok:
            continue
        fig, axes = plt.subplots(1, len(batches) + 1, figsize=(3.4 * (len(batches) + 1), 3.2))
        labels = list(ok)
        colors = [f"C{list(entry['backends']).index(b)}" for b in labels]
        for i, (ax, b) in enumerate(zip(axes, batches)):
            stats = [ok[k]["batches"][str(b)] for k in labels]
            if i == 0:
                vals = [s["median_ms"] for s in stats]
                err = [[s["median_ms"] - s["q25_ms"] for s in stats], [s["q75_ms"] - s["median_ms"] for s in stats]]
                ax.set_title(f"latency, batch {b} (ms, lower is better)", fontsize=8)
            else:
                vals = [s["per_s"] for s in stats]
                err = [[s["per_s"] - b / s["q75_ms"] * 1e3 for s in stats],
                       [b / s["q25_ms"] * 1e3 - s["per_s"] for s in stats]]
                ax.set_title(f"throughput, batch {b} (/s, higher is better)", fontsize=8)
            ax.barh(labels, vals, xerr=err, color=colors)
            ax.invert_yaxis()
            ax.tick_params(labelsize=7)
            if i:
                ax.set_yticklabels([])
        ax = axes[-1]
        ax.barh(labels, [ok[k]["peak_mb"] for k in labels], color="0.8", label="process peak")
        ax.barh(labels, [ok[k]["model_mb"] for k in labels], color=colors, label="model")
        ax.invert_yaxis()
        ax.set_yticklabels([])
        ax.set_title("memory (MB)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
        fig.suptitle(f"{name}: {entry['description']}", fontsize=8)
        fig.tight_layout()
        path = directory / f"bench_{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out[name] = path
    return out


def markdown(report: dict, figures: dict[str, str] | None = None) -> list[str]:
    """The markdown lines of a run: the set-up, then per model its table and chart (``figures``: model ->
    path of the PNG relative to the markdown file)."""
    cfg, m = report["config"], report["machine"]
    batches = cfg["batches"]
    versions = ", ".join(f"{k} {v}" for k, v in report.get("versions", {}).items())
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores" + (f", GPU {m['gpu']}" if m.get("gpu") else "")
        + f", Python {m['python']}; {versions}.",
        f"Models at size `{cfg['size']}`; {cfg['rounds']} round(s) (backends in order, then reversed) x "
        f"{cfg['repeats']} blocks of about {cfg['block_s']} s per batch size; medians of the blocks. Outputs of "
        f"every backend were checked against onnxruntime at batch {cfg['check_batch']} (tolerance {cfg['rtol']:g} "
        "of the output scale) before timing. `x ORT`: onnxruntime (1 thread) time / backend time (> 1: faster). "
        "`load s`: model load, code generation and compilation included; `1st call s`: the first call (jit "
        "compilation included). `model MB`: peak resident memory minus the memory before loading the model.",
        "",
        "Backends: " + "; ".join(f"`{k}`: {v}" for k, v in report["backends"].items()) + ".",
    ]
    head = _header(batches)
    for name, entry in report["models"].items():
        lines += ["", f"**{name}**: {entry['description']} ({entry['parameters']:,} parameters, ONNX "
                  f"{entry['onnx_bytes'] / 1e6:.1f} MB)", "", "| " + " | ".join(head) + " |",
                  "|" + "---|" * len(head)]
        for r in _rows(entry, batches):
            if len(r) == len(head):
                lines.append("| " + " | ".join(r) + " |")
            else:
                lines.append(f"| {r[0]} | {r[1]}: {r[2].replace('|', '/')} |" + " |" * (len(head) - 2))
        if figures and name in figures:
            lines += ["", f"![{name}]({figures[name]})"]
    return lines


def write_markdown(report: dict, path, section: str = "bench") -> None:
    """Write the run into ``path`` between ``<!-- section:begin -->`` and ``<!-- section:end -->`` (appended
    when absent), with the charts in ``figures/`` next to it."""
    path = Path(path)
    pngs = charts(report, path.parent / "figures")
    lines = markdown(report, {k: f"figures/{p.name}" for k, p in pngs.items()})
    write_section(path, section, lines, "## HEP inference benchmark (`ml4ep bench`)")


def write_section(path: str | Path, name: str, lines: list[str], heading: str = "") -> None:
    """Replaces the text between ``<!-- name:begin -->`` and ``<!-- name:end -->`` with ``lines``, or appends
    the section (after ``heading``) when the markers are absent; the rest of the file is kept."""
    path = Path(path)
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = "\n".join([begin, *lines, end])
    if begin in text and end in text:
        pre, rest = text.split(begin, 1)
        text = pre + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + (heading + "\n\n" if heading else "") + block + "\n"
    path.write_text(text)
