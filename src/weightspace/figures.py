"""PNG figures like the paper's, drawn by the figures stage alone. They read the metric files and plot
tables (``tables``) the compute stages wrote, and never recompute."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .core.tables import read_csv, write_csv  # noqa: E402
from .core.pairs import Pair, lookup

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


def heatmap(path: Path, methods, M, title: str, fmt: str, vmin, vmax, cmap: str) -> None:
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    im = ax.imshow(M, vmin=vmin, vmax=vmax, cmap=cmap)
    ax.set_xticks(range(len(methods)), [m.upper() for m in methods], rotation=45)
    ax.set_yticks(range(len(methods)), [m.upper() for m in methods])
    for i, row in enumerate(M):
        for j, v in enumerate(row):
            ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=8)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata=PNG_META)
    plt.close(fig)


def lines(path: Path, table, series: dict[str, str], title: str, ylabel: str) -> None:
    """One line per ``series`` entry (label -> column of ``table``) against its ``layer`` column."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for label, col in series.items():
        ax.plot(table["layer"], table[col], marker="o", label=label.upper())
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
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
            "global cosine of Delta W", ".2f", -1, 1, "RdBu_r")
    angles = {k: v["median"] for k, v in m["angle_top1"].items()}
    heatmap(out / "angle_top1_matrix.png", methods, _matrix(methods, angles, 0.0),
            "median top-1 principal angle (deg)", ".0f", 0, 90, "viridis")
    table = read_csv(tables / "cosine_per_layer.csv")
    series = {x: f"{ref}-{x}" if f"{ref}-{x}" in table else f"{x}-{ref}" for x in methods if x != ref}
    if "noise_floor" in table:  # the same method from another seed
        series["noise_floor"] = "noise_floor"
    lines(out / "cosine_per_layer.png", table, series, f"cosine to {ref.upper()} per layer", "cosine")
    lines(out / "orthogonal_fraction_per_layer.png", read_csv(tables / "orthogonal_fraction_per_layer.csv"),
          {x: x for x in methods if x != ref}, f"orthogonal fraction off {ref.upper()} per layer",
          "||dW - P dW|| / ||dW||")


def accuracy_figures(m: dict, out_dir, models: list[str]) -> None:
    """Per set of ``m`` (set -> compare's metrics): pass@1 bars with their intervals, and the
    Holm-adjusted McNemar p-value matrix."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for s, res in m.items():
        fig, ax = plt.subplots(figsize=(5.5, 3.4))
        acc = [res[x]["acc"] for x in models]
        # max(0, .): at acc 0 or 1 the Wilson bound equals acc up to rounding (-1e-17 would stop matplotlib)
        err = [[max(0.0, a - res[x]["lo"]) for a, x in zip(acc, models)],
               [max(0.0, res[x]["hi"] - a) for a, x in zip(acc, models)]]
        ax.bar(range(len(models)), acc, yerr=err, capsize=4, color="#4c72b0")
        ax.set_xticks(range(len(models)), [x.upper() for x in models])
        ax.set_ylabel("greedy pass@1")
        ax.set_ylim(0, 1)
        ax.set_title(f"{s}: accuracy with 95% Wilson intervals (n={res[models[0]]['n']})")
        fig.tight_layout()
        fig.savefig(out / f"accuracy_{s}.png", dpi=110, metadata=PNG_META)
        plt.close(fig)
        P = _matrix(models, {k: v["p_holm"] for k, v in res.items() if Pair.maybe(k) is not None}, 1.0)
        heatmap(out / f"mcnemar_{s}.png", models, P, f"{s}: McNemar p (Holm)", ".2g", 0, 1, "magma")


def connectivity_figure(curves_csv, out_png) -> None:
    table = read_csv(curves_csv)
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for pair in [k for k in table if k != "alpha"]:
        a, b = Pair.parse(pair)
        ax.plot(table["alpha"], table[pair], marker="o", label=f"{a.upper()} (alpha=1) <-> {b.upper()} (alpha=0)")
    ax.set_xlabel("alpha: W0 + alpha dW_a + (1 - alpha) dW_b")
    ax.set_ylabel("masked-answer CE")
    ax.set_title("linear mode connectivity in Delta W space")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110, metadata=PNG_META)
    plt.close(fig)


def cka_figure(cka_csv, out_png) -> None:
    table = read_csv(cka_csv)
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for pair in [k for k in table if k != "layer" and not k.startswith("base-")]:
        ax.plot(table["layer"], table[pair], marker=".", label=pair.upper())
    ax.set_xlabel("layer")
    ax.set_ylabel("debiased linear CKA")
    ax.set_title("CKA between adapted models per layer")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=3)
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


PRETRAINED_PANELS = {"energy_left": "energy of dW in W0's top-k left subspace", "bf16_unchanged": "bf16 entries unchanged",
                     "spectral_shift": "normalised spectral shift", "intruder_energy": "intruder energy share"}


def pretrained_figure(tables_dir, out_png, methods: list[str]) -> None:
    """Per layer and method, four W0-relative metrics (``plots/geometry/pretrained_<name>_per_layer.csv``)."""
    fig, axes = plt.subplots(2, 2, figsize=(9, 6), sharex=True)
    for ax, (name, title) in zip(axes.flat, PRETRAINED_PANELS.items()):
        t = read_csv(Path(tables_dir) / f"pretrained_{name}_per_layer.csv")
        for m in methods:
            ax.plot(t["layer"], t[m], marker="o", label=m.upper())
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("layer")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Relative to the pretrained weights W0 (beyond the paper)", fontsize=10)
    fig.tight_layout()
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110, metadata=PNG_META)
    plt.close(fig)


def draw_all(metrics_dir, tables_dir, out_dir, methods: list[str]) -> list[Path]:
    """Every figure of the report from ``<metrics_dir>/{geometry,accuracy}.json`` and the tables under
    ``<tables_dir>/{geometry,connectivity,cka}``, into ``<out_dir>/{geometry,accuracy,connectivity,cka}/``;
    returns the PNG paths. ``methods``: the order of the matrices and bars (the base first in accuracy)."""
    metrics, tables, out = Path(metrics_dir), Path(tables_dir), Path(out_dir)
    geometry_figures(metrics / "geometry.json", tables / "geometry", out / "geometry", methods)
    acc = json.loads((metrics / "accuracy.json").read_text())
    accuracy_figures({s: v for s, v in acc.items() if s != "seed_twins"}, out / "accuracy", ["base", *methods])
    connectivity_figure(tables / "connectivity" / "curves.csv", out / "connectivity" / "connectivity.png")
    cka_figure(tables / "cka" / "debiased.csv", out / "cka" / "cka_per_layer.png")
    pretrained_figure(tables / "geometry", out / "geometry" / "pretrained_per_layer.png", methods)
    return sorted(out.rglob("*.png"))
