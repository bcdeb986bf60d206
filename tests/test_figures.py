"""Every figure of the report, drawn from the plumbing run's metrics and tables, checked on matplotlib's own
objects: integer ticks on layer axes, a distinct (colour, line style) for every line of one axes, a label on
every axis of a plot, matrix text that contrasts with its cell, and no upper-cased method names."""

from __future__ import annotations

import pytest

from weightspace import config


def params_of(root) -> config.Params:
    return config.load(root / "params.yaml")


@pytest.fixture
def drawn(plumbing, tmp_path, monkeypatch):
    """(path, figure) of every figure ``draw_all`` saves, kept open."""
    from weightspace import figures

    root, _ = plumbing
    saved, close = [], figures.plt.close
    monkeypatch.setattr(figures.plt, "close", saved.append)
    paths = figures.draw_all(root / "metrics", root / "plots", tmp_path / "figures", list(params_of(root).methods))
    assert len(saved) == len(paths) >= 9
    yield saved
    for fig in saved:
        close(fig)


def plot_axes(fig):
    """The axes of a figure that draw lines or bars (not colour bars, not hidden panels)."""
    return [ax for ax in fig.axes if ax.get_visible() and (ax.get_lines() or ax.patches or ax.images)]


def test_layer_axes_have_integer_ticks(drawn):
    checked = 0
    for fig in drawn:
        for ax in plot_axes(fig):
            if "layer" in ax.get_xlabel() and ax.get_lines():
                ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
                assert ticks and all(float(t).is_integer() for t in ticks), (ax.get_title(), ticks)
                checked += 1
    assert checked >= 8  # cosine, orthogonal fraction, four W0 panels, CKA panels


def test_every_line_of_an_axes_has_its_own_colour_and_style(drawn):
    from matplotlib.colors import to_hex

    checked = 0
    for fig in drawn:
        for ax in plot_axes(fig):
            drawn_lines = [ln for ln in ax.get_lines()  # series: labelled lines (error-bar caps are not)
                           if len(ln.get_xdata()) > 1 and not ln.get_label().startswith("_")]
            keys = [(to_hex(ln.get_color()), ln.get_linestyle()) for ln in drawn_lines]
            assert len(keys) == len(set(keys)), (ax.get_title(), keys)
            checked += len(keys) > 1
    assert checked >= 6  # per-layer cosine and orthogonal fraction, the W0 panels, connectivity


def test_every_plot_axis_is_labelled_and_names_are_as_in_the_params(drawn, plumbing):
    """A line or bar plot labels its x axis (in a grid of panels: the bottom row) and its y axis (the first
    column); a matrix's colour bar carries the unit; tick labels name methods as the params do."""
    root, _ = plumbing
    methods = list(params_of(root).methods)
    for fig in drawn:
        for ax in plot_axes(fig):
            if ax.images:
                assert any(a.get_ylabel() for a in fig.axes if a is not ax), ax.get_title()
            else:
                ss = ax.get_subplotspec()
                assert ax.get_xlabel() or not ss.is_last_row(), ax.get_title()
                assert ax.get_ylabel() or not ss.is_first_col(), ax.get_title()
            labels = [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()]
            assert not any(m.upper() in labels for m in methods), labels


def test_matrix_text_contrasts_with_its_cell(drawn):
    """Black text on light cells, white on dark ones (luminance of the cell's colour)."""
    checked = 0
    for fig in drawn:
        for ax in fig.axes:
            for im in ax.images:
                data = im.get_array()
                for t in ax.texts:
                    x, y = t.get_position()
                    v = data[int(round(y)), int(round(x))]
                    r, g, b, _ = im.cmap(im.norm(v))
                    lum = 0.299 * r + 0.587 * g + 0.114 * b
                    assert (t.get_color() == "white") == (lum < 0.5), (ax.get_title(), v, t.get_color())
                    checked += 1
    assert checked > 20
