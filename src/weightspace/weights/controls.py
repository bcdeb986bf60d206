"""What the geometry stage measures beside the between-method analyses (``analysis.analyse``): the controls
(each method against its seed twin, the LR-matched run, runs at other LRs), the online methods' orthogonal
fraction off their offline counterpart, the depth profile of the orthogonal fraction, and the W0-relative
analyses over the methods and their twins at once. Functions of factors and numbers: the stage reads the files
(the deltas, W0) and the params, and writes the results."""

from __future__ import annotations

from .. import registry
from .analysis import analyse
from ..core.pairs import Pair, Twin
from .pretrained import analyse_relative

# the depth profile's late layers: the paper's "last five of 36" (Qwen3-4B), as that share of any model's layers
LATE = (5, 36)


def pair(fa, fb, top_k: int) -> tuple[dict, list[float]]:
    """The pair metrics of two adapters a, b: global cosine, median top-1 / top-k angles (with IQR),
    u1 / v1 alignment, both norms, b's orthogonal fraction off a; and the per-layer cosine."""
    m, tables = analyse({"a": fa, "b": fb}, top_k, "a")
    return ({"cosine": m["cosine"]["global"]["a-b"], "angle_top1": m["angle_top1"]["a-b"],
             f"angle_top{top_k}": m[f"angle_top{top_k}"]["a-b"], "u1_alignment": m["u1_alignment"]["a-b"],
             "v1_alignment": m["v1_alignment"]["a-b"], "frobenius": [m["frobenius"]["a"], m["frobenius"]["b"]],
             "orthogonal_fraction": m["orthogonal_fraction"]["direction"]["b"]},
            [r["a-b"] for r in tables["cosine_per_layer"]])


def controls(deltas: dict, seeds: dict, lr_matched, sweep: dict, top_k: int, seed_pair: tuple[int, int],
             matched: tuple[str, str], lrs: dict[str, float]) -> tuple[dict, dict[str, list[float]]]:
    """``seeds``, ``lr_matched`` and ``lr_step`` metrics (module docstring) and per-layer seed cosines. ``deltas``,
    ``seeds``: the methods' factors and their twins', by method; ``seed_pair``: (train.seed, controls.seed);
    ``matched``: (the LR-matched method, the method whose LR it takes); ``lrs``: both methods' own peak LRs;
    ``sweep``: run name -> (method, LR ratio to its own, factors)."""
    out: dict = {"seeds": {}, "lr_step": {}}
    per_layer = {}
    for m in deltas:
        out["seeds"][m], per_layer[m] = pair(deltas[m], seeds[m], top_k)
        out["seeds"][m]["seeds"] = list(seed_pair)
    lm, of = matched
    out["lr_matched"] = {"method": lm, "lr_of": of, "lr": lrs[of], "own_lr": lrs[lm],
                         "vs": {m: pair(deltas[m], lr_matched, top_k)[0] for m in deltas}}
    steps = {"lr_matched": (lm, lrs[of] / lrs[lm], lr_matched)}
    steps.update({name: (m, mult, d) for name, (m, mult, d) in sweep.items()})
    for name, (m, ratio, d) in steps.items():
        p, _ = pair(deltas[m], d, top_k)
        out["lr_step"][name] = {"method": m, "lr_ratio": ratio, "cosine": p["cosine"],
                                "norm_ratio": p["frobenius"][1] / p["frobenius"][0],
                                "angle_top1": p["angle_top1"]["median"]}
    return out, per_layer


def off_counterpart(deltas: dict, top_k: int) -> dict[str, float]:
    """Each online method's orthogonal fraction (direction form, global) off its offline counterpart
    (``registry.Method.offline``), where both were trained: the second reference beside ``geometry.reference``."""
    out = {}
    for m in deltas:
        c = registry.get(m).offline
        if c is not None and c in deltas:
            out[m] = analyse({c: deltas[c], m: deltas[m]}, top_k, c)[0]["orthogonal_fraction"]["direction"][m]
    return out


def depth_profile(rows: list[dict]) -> dict:
    """Per method, the mean per-layer orthogonal fraction over the middle third of the layers and over
    the last ``LATE`` = 5/36 of them, at least one (the paper: GRPO 0.55 in mid layers, 0.79-0.86 in the last
    five of 36)."""
    n = len(rows)
    mid, late = rows[n // 3 : max(n // 3 + 1, 2 * n // 3)], rows[n - max(1, round(LATE[0] * n / LATE[1])) :]
    methods = [k for k in rows[0] if k != "layer" and not k.endswith("_colspace")]
    return {m: {"mid": sum(r[m] for r in mid) / len(mid), "late": sum(r[m] for r in late) / len(late),
                "mid_layers": [r["layer"] for r in mid], "late_layers": [r["layer"] for r in late]} for m in methods}


def _names_a_twin(key: str) -> bool:
    """Whether a metric key (a method or a pair ``a-b``) names a seed twin."""
    return any(Twin.maybe(x) for x in (Pair.maybe(key) or (key,)))


def relative(deltas: dict, seeds: dict, weights: dict, pcfg) -> tuple[dict, dict, dict]:
    """``analyse_relative`` over every method and its seed twin at once (W0, ``weights``, factorised once per
    module), chance levels for the methods only: (the methods' metrics with ``chance`` and ``intruder_eps``, the
    twins' metrics keyed by method, the methods' per-layer tables)."""
    both = {**deltas, **{Twin(m).name: seeds[m] for m in seeds}}
    m, tables = analyse_relative(both, weights, pcfg.top_k, pcfg.intruder_rate, pcfg.partial_rank,
                                 chance_for=list(deltas))
    main, twin = {}, {}
    for name, v in m.items():
        if not isinstance(v, dict) or name in ("chance", "intruder_eps"):
            main[name] = v
        else:
            main[name] = {k: x for k, x in v.items() if k in deltas}
            twin[name] = {Twin.maybe(k).method: x for k, x in v.items() if Twin.maybe(k)}
    keep = lambda row: {k: x for k, x in row.items() if k == "layer" or not _names_a_twin(k)}  # noqa: E731
    return main, twin, {k: [keep(r) for r in rows] for k, rows in tables.items()}
