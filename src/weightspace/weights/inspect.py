"""Analyse anyone's LoRA adapters: ``python -m weightspace.weights.inspect --base BASE ADAPTER [ADAPTER ...] --out DIR``.

BASE is a hub id or a local model folder (or this pipeline's ``models/base``); each ADAPTER a PEFT LoRA
adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``), of any rank, rsLoRA or not. The
same code as the geometry stage: every pairwise metric (``analysis.analyse``: cosine, principal angles,
u1/v1 alignment, norms, effective rank, orthogonal fraction off ``--reference``) and every W0-relative one
(``pretrained.analyse_relative``). Writes ``DIR/inspect.json``, ``DIR/inspect.md`` (tables),
``DIR/tables/*.csv`` (per layer) and ``DIR/figures/*.png``.

Refused with a message naming the adapter, before any analysis: a folder that is not a PEFT LoRA adapter
(another ``peft_type``), a scaling other than (alpha/r) B A or its rsLoRA form (DoRA, per-module
``rank_pattern`` / ``alpha_pattern``, ``fan_in_fan_out``), an adapter whose ``base_model_name_or_path`` names
another model than BASE (``--any-base`` skips that one check), adapters that cover different modules, target
modules the base's checkpoint lacks, and a module whose shape differs from the base's W0.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..model.adapters import AdapterError, check_same_modules, read_adapter


def same_base(named: str, base: str) -> bool:
    """The adapter's ``base_model_name_or_path`` names ``base``: the same string, or a relative path whose
    parts end ``base``'s resolved folder (a pipeline adapter records ``models/base``)."""
    if str(named).rstrip("/") == str(base).rstrip("/"):
        return True
    n = Path(named)
    if n.is_absolute() or not Path(base).is_dir():
        return False
    return Path(base).resolve().parts[-len(n.parts):] == n.parts


def load(paths: list[str], base: str, any_base: bool) -> dict[str, dict]:
    """Factors of each adapter, keyed by a unique short name (the folder's name, numbered when repeated)."""
    out: dict[str, dict] = {}
    for p in paths:
        folder = Path(p)
        factors = read_adapter(folder)
        named = json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path")
        if named and not any_base and not same_base(named, base):
            raise AdapterError(f"{folder}: trained on {named!r}, not on --base {base!r} (pass --any-base if it is "
                               "the same model under another name)")
        name, i = folder.name or str(folder), 2
        while name in out:
            name, i = f"{folder.name}_{i}", i + 1
        out[name] = factors
    check_same_modules(out)
    return out


def check_shapes(adapters: dict[str, dict], weights: dict) -> None:
    for name, factors in adapters.items():
        for mod, f in factors.items():
            want = tuple(weights[mod].shape)
            got = (f.B.shape[0], f.A.shape[1])
            if got != want:
                raise AdapterError(f"{name}: module {mod} updates a {got} matrix but the base's W0 is {want}: "
                                   "the adapter was trained on another base")


def markdown(pair: dict, rel: dict, names: list[str], base: str, top_k: int) -> str:
    lines = [f"# LoRA adapters against each other and against {base}", "",
             f"Adapters: {', '.join(names)}; {pair['modules']} modules; top-k = {top_k}.", "",
             "## Between adapters", "", "| pair | cosine | median top-1 angle | median top-k angle | u1 alignment |",
             "|---|---|---|---|---|"]
    for p, c in pair["cosine"]["global"].items():
        lines.append(f"| {p} | {c:.4f} | {pair['angle_top1'][p]['median']:.2f} | "
                     f"{pair[f'angle_top{top_k}'][p]['median']:.2f} | {pair['u1_alignment'][p]:.4f} |")
    chance = rel.get("chance", {})
    lines += ["", "## Relative to the pretrained weights", "",
              "Each value beside its chance level: the same metric on a random update of the same shape, rank and "
              "Frobenius norm per module.", "", "| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for k, v in rel.items():
        if isinstance(v, dict) and set(v) == set(names):
            lines.append(f"| {k} | " + " | ".join(f"{v[n]:.4g} (chance {chance[k][n]:.4g})" for n in names) + " |")
    lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="hub id or local model folder the adapters were trained on")
    ap.add_argument("adapters", nargs="+", help="PEFT LoRA adapter folders")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--top-k", type=int, default=None, help="default: min(10, the smallest rank)")
    ap.add_argument("--reference", default=None, help="orthogonal fractions off this adapter (default: the first)")
    ap.add_argument("--intruder-rate", type=float, default=0.05,
                    help="per module, the |cos| threshold that makes a random direction an intruder this often")
    ap.add_argument("--partial-rank", type=int, default=None, help="W0's top-K triplets only (large models)")
    ap.add_argument("--any-base", action="store_true", help="skip the base_model_name_or_path check (shapes still)")
    args = ap.parse_args(argv)
    try:
        adapters = load(args.adapters, args.base, args.any_base)
        names = list(adapters)
        ranks = {n: min(f.A.shape[0] for f in fs.values()) for n, fs in adapters.items()}
        top_k = args.top_k or min(10, *ranks.values())
        if top_k > min(ranks.values()):
            raise AdapterError(f"--top-k {top_k} exceeds the smallest rank {min(ranks.values())} ({ranks})")
        reference = args.reference or names[0]
        if reference not in adapters:
            raise AdapterError(f"--reference {reference!r} is none of {names}")
        from ..model.models import load_w0

        weights = load_w0(args.base, list(adapters[names[0]]))
        check_shapes(adapters, weights)
    except (AdapterError, ValueError, FileNotFoundError) as e:
        print(f"inspect: {e}", file=sys.stderr)
        return 2
    from .analysis import analyse
    from ..figures import heatmap, pretrained_figure, _matrix
    from .pretrained import analyse_relative
    from ..core.tables import write_csv

    pair, pair_tables = analyse(adapters, top_k, reference)
    rel, rel_tables = analyse_relative(adapters, weights, top_k, args.intruder_rate, args.partial_rank)
    out = args.out
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    result = {"base": args.base, "adapters": dict(zip(names, args.adapters)), "ranks": ranks, "top_k": top_k,
              "reference": reference, "pairwise": pair, "pretrained": rel}
    (out / "inspect.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    (out / "inspect.md").write_text(markdown(pair, rel, names, args.base, top_k))
    for name, rows in {**pair_tables, **{f"pretrained_{k}": v for k, v in rel_tables.items()}}.items():
        write_csv(out / "tables" / f"{name}.csv", rows, "%.10g")
    heatmap(out / "figures" / "cosine_matrix.png", names, _matrix(names, pair["cosine"]["global"], 1.0),
            "global cosine of Delta W", ".3f", -1, 1, "RdBu_r", "cosine")
    pretrained_figure(out / "tables", out / "figures" / "pretrained_per_layer.png", names)
    print(f"inspect: {len(names)} adapters, {pair['modules']} modules -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
