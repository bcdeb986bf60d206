"""PNG figures like the paper's, drawn by the figures stage alone. They read the metric files and plot
tables (``tables``) the compute stages wrote, and never recompute.

Conventions (``tests/test_figures.py`` checks them on matplotlib's own objects): layers are integers on their
axis, numbered as in the tables; every line of one axes has its own (colour, line style); every axis has a label
with its unit; matrices print values in a colour that contrasts with the cell; a panel whose values are all zero
says so instead of drawing flat lines; method names appear as the params write them."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from matplotlib.ticker import MaxNLocator  # noqa: E402

from .core.tables import read_csv, write_csv  # noqa: E402
from .core.pairs import Pair, lookup

COLORS = plt.get_cmap("tab10").colors
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v")


def style(i: int) -> dict:
    """The i-th series' colour, line style and marker: (i mod 10, i mod 4) differ for any two i < 20."""
    return {"color": COLORS[i % 10], "linestyle": LINESTYLES[i % 4], "marker": MARKERS[i % 5]}


def integer_x(ax) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))

PNG_META = {"Software": None}  # no version string: the same numbers give the same bytes


def _matrix(methods, values: dict[str, float], diag: float):
    n = len(methods)
    M = [[diag if i == j else float("nan") for j in range(n)] for i in range(n)]
    for i, a in enumerate(methods):
        for j, b in enumerate(methods):
            v = lookup(values, a, b)
            if i != j and v is not None:
                M[i][j] = v
    return M


def heatmap(path: Path, methods, M, title: str, fmt: str, vmin, vmax, cmap: str, label: str) -> None:
    """A matrix with its values printed in black or white, whichever contrasts with the cell's colour."""
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    im = ax.imshow(M, vmin=vmin, vmax=vmax, cmap=cmap)
    ax.set_xticks(range(len(methods)), list(methods), rotation=45)
    ax.set_yticks(range(len(methods)), list(methods))
    for i, row in enumerate(M):
        for j, v in enumerate(row):
            if v != v:  # NaN: no value
                continue
            r, g, b, _ = im.cmap(im.norm(v))
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
            ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=7, color="white" if dark else "black")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, label=label)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata=PNG_META)
    plt.close(fig)


def lines(path: Path, table, series: dict[str, str], title: str, ylabel: str) -> None:
    """One line per ``series`` entry (label -> column of ``table``) against its ``layer`` column."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for i, (label, col) in enumerate(series.items()):
        ax.plot(table["layer"], table[col], label=label, **style(i))
    integer_x(ax)
    ax.set_xlabel("layer (0 = the first decoder block)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata=PNG_META)
    plt.close(fig)


def geometry_figures(metrics_path, tables_dir, out_dir, methods: list[str]) -> None:
    """cosine matrix, median top-1 angle matrix, per-layer cosine vs the reference, per-layer
    orthogonal fraction."""
    m = json.loads(Path(metrics_path).read_text())
    tables, out = Path(tables_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ref = m["reference"]
    heatmap(out / "cosine_matrix.png", methods, _matrix(methods, m["cosine"]["global"], 1.0),
            "global cosine of Delta W", ".3f", -1, 1, "RdBu_r", "cosine")
    angles = {k: v["median"] for k, v in m["angle_top1"].items()}
    top = max(angles.values(), default=1.0)
    heatmap(out / "angle_top1_matrix.png", methods, _matrix(methods, angles, 0.0),
            "median top-1 principal angle over modules", ".1f", 0, top, "viridis", "degrees")
    table = read_csv(tables / "cosine_per_layer.csv")
    series = {x: f"{ref}-{x}" if f"{ref}-{x}" in table else f"{x}-{ref}" for x in methods if x != ref}
    if "noise_floor" in table:  # the reference method against its own seed twin
        series[f"{ref} vs its seed twin (noise floor)"] = "noise_floor"
    lines(out / "cosine_per_layer.png", table, series, f"cosine of each method's dW to {ref}'s, per layer",
          "cosine (unitless)")
    lines(out / "orthogonal_fraction_per_layer.png", read_csv(tables / "orthogonal_fraction_per_layer.csv"),
          {x: x for x in methods if x != ref}, f"orthogonal fraction off {ref}, per layer",
          "||dW - P dW|| / ||dW|| (fraction)")


def accuracy_figures(m: dict, out_dir, models: list[str]) -> None:
    """Per set of ``m`` (set -> compare's metrics): pass@1 bars with their intervals, and the paired accuracy
    difference (row minus column, points) of every pair with its raw exact McNemar p, lower triangle only."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for s, res in m.items():
        fig, ax = plt.subplots(figsize=(5.5, 3.4))
        acc = [res[x]["acc"] for x in models]
        # max(0, .): at acc 0 or 1 the Wilson bound equals acc up to rounding (-1e-17 would stop matplotlib)
        err = [[max(0.0, a - res[x]["lo"]) for a, x in zip(acc, models)],
               [max(0.0, res[x]["hi"] - a) for a, x in zip(acc, models)]]
        ax.bar(range(len(models)), acc, yerr=err, capsize=4, color="#4c72b0")
        ax.set_xticks(range(len(models)), list(models))
        ax.set_xlabel("model")
        ax.set_ylabel("greedy pass@1 (share of items)")
        ax.set_ylim(0, 1)
        ax.set_title(f"{s}: accuracy with 95% Wilson intervals (n={res[models[0]]['n']})", fontsize=10)
        fig.tight_layout()
        fig.savefig(out / f"accuracy_{s}.png", dpi=110, metadata=PNG_META)
        plt.close(fig)
        n = len(models)
        D = [[float("nan")] * n for _ in range(n)]
        text = {}
        for i, a in enumerate(models):
            for j, b in enumerate(models[:i]):
                t = lookup(res, a, b)
                D[i][j] = 100 * (res[a]["acc"] - res[b]["acc"])
                text[i, j] = f"{D[i][j]:+.1f}\np={t['p']:.2g}"
        lim = max((abs(v) for row in D for v in row if v == v), default=1.0) or 1.0
        fig, ax = plt.subplots(figsize=(5.6, 4.6))
        im = ax.imshow(D, vmin=-lim, vmax=lim, cmap="RdBu_r")
        ax.set_xticks(range(n), list(models), rotation=45)
        ax.set_yticks(range(n), list(models))
        for (i, j), label in text.items():
            r, g, b, _ = im.cmap(im.norm(D[i][j]))
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
            ax.text(j, i, label, ha="center", va="center", fontsize=6, color="white" if dark else "black")
        ax.set_title(f"{s}: row minus column accuracy, raw exact McNemar p", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, label="accuracy difference (points)")
        fig.tight_layout()
        fig.savefig(out / f"mcnemar_{s}.png", dpi=110, metadata=PNG_META)
        plt.close(fig)


def connectivity_figure(curves_csv, out_png, base_ce: float | None = None) -> None:
    """Each pair's loss along alpha, and the base's loss as a reference line."""
    table = read_csv(curves_csv)
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for i, pair in enumerate([k for k in table if k != "alpha"]):
        a, b = Pair.parse(pair)
        ax.plot(table["alpha"], table[pair], label=f"{a} (alpha=1) - {b} (alpha=0)", **style(i))
    if base_ce is not None:
        ax.axhline(base_ce, color="black", linewidth=1, label="the base (no update)")
    ax.set_xlabel("alpha: W0 + alpha dW_a + (1 - alpha) dW_b")
    ax.set_ylabel("masked-answer CE (nats per token)")
    ax.set_title("linear mode connectivity in Delta W space", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(out_png, dpi=110, metadata=PNG_META)
    plt.close(fig)


def cka_figure(cka_csv, out_png) -> None:
    """Linear CKA per layer (the biased statistic the claims read), one small panel per pair (15 pairs of six
    methods would not be told apart as lines of one axes): the pairs of adapted models first, then each method
    against the base, the reference for how far any adapter moved the representations."""
    table = read_csv(cka_csv)
    pairs = [k for k in table if k != "layer" and not k.startswith("base-")]
    pairs += [k for k in table if k.startswith("base-")]
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    cols = 5
    rows = max(1, -(-len(pairs) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 1.9 * rows), sharex=True, sharey=True, squeeze=False)
    lo = min(float(table[p].min()) for p in pairs) if pairs else 0.0
    for ax, pair in zip(axes.flat, pairs):
        ax.plot(table["layer"], table[pair], **style(1 if pair.startswith("base-") else 0))
        ax.set_title(pair, fontsize=8)
        ax.set_ylim(min(lo, 0.99) - 0.01, 1.005)
        integer_x(ax)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(pairs):]:
        ax.set_visible(False)
    for col in axes.T:  # the lowest drawn panel of each column carries the layer axis (below it: hidden panels)
        for low in [ax for ax in col if ax.get_visible()][-1:]:
            low.set_xlabel("layer (0 = first block)", fontsize=8)
            low.xaxis.set_tick_params(labelbottom=True)
    for ax in axes[:, 0]:
        ax.set_ylabel("CKA (unitless)", fontsize=8)
    fig.suptitle("linear CKA (biased, as the claims) per layer: pairs of adapted models, then each against the base",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110, metadata=PNG_META)
    plt.close(fig)


def series_tables(metrics_dir, tables_dir, out_dir, methods: list[str]) -> list[Path]:
    """The curves of ``dvc plots`` in long form (x, ``series``, y), so that dvc.yaml names no method or
    pair: one line per ``series`` value (template ``.dvc/plots/series.json``). From the training curves
    (``<tables_dir>/train/<method>/``; ``online``: an online method's reward, completion length and KL,
    header only when none ran), the geometry, connectivity and CKA tables."""
    import pandas as pd

    tables, out = Path(tables_dir), Path(out_dir)
    ref = json.loads((Path(metrics_dir) / "geometry.json").read_text())["reference"]

    def long(wide, x: str, columns: dict[str, str], y: str):
        return pd.concat([pd.DataFrame({x: wide[x], "series": label, y: wide[col]}) for label, col in columns.items()])

    frames = {
        "training_loss": pd.concat([read_csv(tables / "train" / m / "plots/metrics/loss.tsv", sep="\t")
                                    .assign(series=m)[["step", "series", "loss"]] for m in methods]),
        "seed_alignment": pd.concat([read_csv(tables / "alignment" / f"{m}.csv")
                                     .assign(series=m)[["step", "series", "u1_alignment"]] for m in methods]),
    }
    online = [read_csv(f, sep="\t").assign(series=f"{m} {k}").rename(columns={k: "value"})[["step", "series", "value"]]
              for m in methods for k in ("reward", "completion_length", "kl")
              if (f := tables / "train" / m / "plots" / "metrics" / f"{k}.tsv").is_file()]  # online methods' own curves
    frames["online"] = pd.concat(online) if online else pd.DataFrame(columns=["step", "series", "value"])
    cos = read_csv(tables / "geometry" / "cosine_per_layer.csv")
    series = {x: f"{ref}-{x}" if f"{ref}-{x}" in cos else f"{x}-{ref}" for x in methods if x != ref}
    frames["cosine_per_layer"] = long(cos, "layer", {**series, "noise_floor": "noise_floor"}, "cosine")
    frames["orthogonal_fraction_per_layer"] = long(read_csv(tables / "geometry" / "orthogonal_fraction_per_layer.csv"),
                                                   "layer", {x: x for x in methods if x != ref}, "orthogonal_fraction")
    conn = read_csv(tables / "connectivity" / "curves.csv")
    frames["connectivity"] = long(conn, "alpha", {c: c for c in conn if c != "alpha"}, "ce")
    cka = read_csv(tables / "cka" / "debiased.csv")
    frames["cka_debiased"] = long(cka, "layer", {c: c for c in cka if c != "layer"}, "cka")
    paths = []
    for name, frame in frames.items():
        write_csv(out / f"{name}.csv", frame, "%.10g")
        paths.append(out / f"{name}.csv")
    return paths


PRETRAINED_PANELS = {"energy_left": ("energy of dW in W0's top-k left subspace", "share"),
                     "bf16_unchanged": ("bf16 entries unchanged", "share of entries"),
                     "spectral_shift": ("normalised spectral shift", "relative"),
                     "intruder_energy": ("intruder energy share", "share of top-k energy")}


def pretrained_figure(tables_dir, out_png, methods: list[str]) -> None:
    """Per layer and method, four W0-relative metrics (``plots/geometry/pretrained_<name>_per_layer.csv``); a
    panel whose every value is zero says so."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 6))
    for ax, (name, (title, unit)) in zip(axes.flat, PRETRAINED_PANELS.items()):
        t = read_csv(Path(tables_dir) / f"pretrained_{name}_per_layer.csv")
        if all(float(v) == 0.0 for m in methods for v in t[m]):
            ax.text(0.5, 0.5, "zero for every method and layer", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            for i, m in enumerate(methods):
                ax.plot(t["layer"], t[m], label=m, **style(i))
            integer_x(ax)
            ax.grid(alpha=0.3)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("layer")
        ax.set_ylabel(unit)
    handles, labels = next((h for h in (ax.get_legend_handles_labels() for ax in axes.flat) if h[0]), ([], []))
    if handles:  # one legend for the four panels, below them, where it covers no point
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.suptitle("Relative to the pretrained weights W0 (beyond the paper)", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110, metadata=PNG_META)
    plt.close(fig)


def draw_all(metrics_dir, tables_dir, out_dir, methods: list[str]) -> list[Path]:
    """Every figure of the report from ``<metrics_dir>/{geometry,accuracy,connectivity}.json`` and the tables under
    ``<tables_dir>/{geometry,connectivity,cka}``, into ``<out_dir>/{geometry,accuracy,connectivity,cka}/``;
    returns the PNG paths. ``methods``: the order of the matrices and bars (the base first in accuracy)."""
    metrics, tables, out = Path(metrics_dir), Path(tables_dir), Path(out_dir)
    geometry_figures(metrics / "geometry.json", tables / "geometry", out / "geometry", methods)
    acc = json.loads((metrics / "accuracy.json").read_text())
    accuracy_figures({s: v for s, v in acc.items() if s != "seed_twins"}, out / "accuracy", ["base", *methods])
    conn = json.loads((metrics / "connectivity.json").read_text())
    connectivity_figure(tables / "connectivity" / "curves.csv", out / "connectivity" / "connectivity.png",
                        conn.get("base_ce"))
    cka_figure(tables / "cka" / "biased.csv", out / "cka" / "cka_per_layer.png")
    pretrained_figure(tables / "geometry", out / "geometry" / "pretrained_per_layer.png", methods)
    return sorted(out.rglob("*.png"))
