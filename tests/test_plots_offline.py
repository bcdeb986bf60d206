"""`dvc plots show` renders offline: the HTML template inlines vega and references no remote script."""

import re

from conftest import REPO, run

TEMPLATE = REPO / ".dvc/plots_template.html"


def remote_refs(html: str) -> list[str]:
    return re.findall(r"<(?:script|link|img)[^>]+(?:src|href)\s*=\s*[\"']?(?:https?:)?//[^>]*>", html, re.I)


def test_template_inlines_vega_and_is_configured():
    html = TEMPLATE.read_text()
    assert remote_refs(html) == []
    assert "{plot_divs}" in html and "{scripts}" not in html  # DVC's CDN tags go through {scripts}
    assert re.search(r"vega@5\.\d+\.\d+, vega-lite@5\.\d+\.\d+, vega-embed@6\.\d+\.\d+", html)
    assert "html_template = plots_template.html" in (REPO / ".dvc/config").read_text()


def test_every_declared_plot_renders_offline(plumbing):
    root, tmp = plumbing
    out = run(["dvc", "plots", "show", "-o", str(tmp / "plots-html")], root, tmp)
    html = (tmp / "plots-html/index.html").read_text()
    assert remote_refs(html) == [], remote_refs(html)[:3]
    assert "cdn.jsdelivr" not in html
    n_specs = html.count("vegaEmbed(")
    assert n_specs >= 6, out.stdout  # training loss, cosine, orthogonal fraction, accuracy, connectivity, CKA
    for png in ("cosine_matrix.png", "connectivity.png", "cka_per_layer.png"):
        assert png in html
