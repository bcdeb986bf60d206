"""Study-level analyses and adapter I/O: exact values on constructed adapters, clear errors on bad ones."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from test_geometry import dense, gauge, rand_factor
from weightspace.model import adapters
from weightspace.model.adapters import AdapterError, Factor
from weightspace.weights.analysis import analyse


def study(n_layers=3, seed=0):
    """sft; rft = sft in another gauge (same Delta W); dpo = independent."""
    mods = {}
    for L in range(n_layers):
        for p in ("q_proj", "v_proj"):
            mods[f"model.layers.{L}.self_attn.{p}"] = (L, p)
    sft = {k: Factor(*_fac(seed + 3 * i), 2.0, L, p) for i, (k, (L, p)) in enumerate(mods.items())}
    dpo = {k: Factor(*_fac(100 + seed + 3 * i), 2.0, L, p) for i, (k, (L, p)) in enumerate(mods.items())}
    rft = {k: gauge(f, 7) for k, f in sft.items()}
    return {"sft": sft, "rft": rft, "dpo": dpo}


def _fac(seed):
    f = rand_factor(m=10, n=8, r=4, seed=seed)
    return f.A, f.B


def test_same_delta_in_another_gauge_is_identical_everywhere():
    metrics, tables = analyse(study(), top_k=3, reference="sft")
    assert metrics["cosine"]["global"]["sft-rft"] == pytest.approx(1.0, abs=1e-12)
    assert metrics["angle_top1"]["sft-rft"]["median"] < 1e-5
    assert metrics["angle_top3"]["sft-rft"]["median"] < 1e-5
    assert metrics["u1_alignment"]["sft-rft"] == pytest.approx(1.0, abs=1e-10)
    assert metrics["orthogonal_fraction"]["direction"]["rft"] == pytest.approx(0.0, abs=1e-5)
    assert metrics["frobenius"]["rft"] == pytest.approx(metrics["frobenius"]["sft"], rel=1e-12)
    assert list(metrics["cosine"]["global"]) == ["sft-rft", "sft-dpo", "rft-dpo"]
    assert [r["layer"] for r in tables["cosine_per_layer"]] == [0, 1, 2]


def test_global_values_equal_dense_recomputation():
    s = study()
    metrics, tables = analyse(s, top_k=3, reference="sft")
    flat = {m: torch.cat([dense(f).flatten() for f in s[m].values()]) for m in s}
    want = (flat["sft"] @ flat["dpo"] / (flat["sft"].norm() * flat["dpo"].norm())).item()
    assert metrics["cosine"]["global"]["sft-dpo"] == pytest.approx(want, abs=1e-10)
    # orthogonal fraction, direction form: sqrt(sum_m ||D - <D,S>/||S||^2 S||^2 / sum_m ||D||^2)
    res = tot = 0.0
    for k in s["sft"]:
        D, S = dense(s["dpo"][k]), dense(s["sft"][k])
        res += (D - (D * S).sum() / (S * S).sum() * S).pow(2).sum().item()
        tot += D.pow(2).sum().item()
    assert metrics["orthogonal_fraction"]["direction"]["dpo"] == pytest.approx((res / tot) ** 0.5, rel=1e-10)
    # per layer cosine, layer 1 = its two modules flattened together
    ks = [k for k in s["sft"] if ".1." in k]
    a = torch.cat([dense(s["sft"][k]).flatten() for k in ks])
    b = torch.cat([dense(s["dpo"][k]).flatten() for k in ks])
    assert tables["cosine_per_layer"][1]["sft-dpo"] == pytest.approx((a @ b / (a.norm() * b.norm())).item(), abs=1e-10)
    # colspace form never exceeds the direction form
    assert metrics["orthogonal_fraction"]["colspace"]["dpo"] <= metrics["orthogonal_fraction"]["direction"]["dpo"]


def test_analysis_errors():
    s = study()
    with pytest.raises(ValueError, match="top_k: 5 must lie in 1..r=4"):
        analyse(s, top_k=5, reference="sft")
    with pytest.raises(ValueError, match="reference: 'grpo'"):
        analyse(s, top_k=2, reference="grpo")
    broken = dict(s, dpo={k: v for k, v in list(s["dpo"].items())[1:]})
    with pytest.raises(AdapterError, match="lacks \\['model.layers.0.self_attn.q_proj'\\]"):
        analyse(broken, top_k=2, reference="sft")


def previous_analyse():
    """``analyse_reference`` from benchmarks/geometry_scale.py: the per-module implementation that
    ``analyse`` replaced (one module at a time, inner products recomputed per pair and per layer)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "geometry_scale.py"
    spec = importlib.util.spec_from_file_location("geometry_scale", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.analyse_reference, mod.max_difference


def mixed_study(seed: int) -> dict[str, dict[str, Factor]]:
    """Four independent random adapters; per layer modules of three shapes and two ranks (10x8 r=4,
    6x8 r=4, 8x12 r=6), in layer 1 a rank-2 A (sft) and a rank-2 B (dpo)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i, meth in enumerate(("sft", "rft", "dpo", "grpo")):
        out[meth] = {}
        for L in range(3):
            for p, (m, n, r) in {"q_proj": (10, 8, 4), "v_proj": (6, 8, 4), "o_proj": (8, 12, 6)}.items():
                A = torch.randn(r, n, generator=g, dtype=torch.float64)
                B = torch.randn(m, r, generator=g, dtype=torch.float64) * (1 + L)
                if L == 1 and meth == "sft":
                    A = torch.randn(r, 2, generator=g, dtype=torch.float64) @ A[:2]
                if L == 1 and meth == "dpo":
                    B = B[:, :2] @ torch.randn(2, r, generator=g, dtype=torch.float64)
                out[meth][f"model.layers.{L}.self_attn.{p}"] = Factor(A, B, 0.5 * (i + 1), L, p)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_analyse_equals_the_previous_per_module_implementation(seed):
    """Every output (each metric, each per-layer row) to 1e-12; the reference is not the first method,
    so both orders of a pair's inner product are used. top_k = 2 = the smallest rank, so the compared
    singular subspaces are defined (beyond the rank they would be any basis of a null space)."""
    analyse_reference, max_difference = previous_analyse()
    s = mixed_study(seed)
    new, old = analyse(s, top_k=2, reference="rft"), analyse_reference(s, top_k=2, reference="rft")
    assert max_difference(new, old) < 1e-12
    assert new[0]["effective_rank"]["sft"] < new[0]["effective_rank"]["rft"]  # the rank-2 modules count


def write_peft(path, tensors, r=4, alpha=8, **cfg):
    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": r, "lora_alpha": alpha, **cfg}))
    save_file(tensors, path / "adapter_model.safetensors")


def key(L, p, which):
    return f"base_model.model.model.layers.{L}.self_attn.{p}.lora_{which}.weight"


def test_read_adapter_scale_layers_and_roundtrip(tmp_path):
    t = {key(L, p, w): torch.randn(4, 6) if w == "A" else torch.randn(5, 4) for L in (0, 1) for p in ("q_proj", "k_proj")
         for w in "AB"}
    write_peft(tmp_path / "a", t)
    f = adapters.read_adapter(tmp_path / "a")
    assert list(f) == [f"model.layers.{L}.self_attn.{p}" for L in (0, 1) for p in ("k_proj", "q_proj")]
    one = f["model.layers.1.self_attn.q_proj"]
    assert one.scale == 2.0 and one.layer == 1 and one.proj == "q_proj" and one.A.dtype == torch.float64
    write_peft(tmp_path / "rs", t, use_rslora=True)
    assert adapters.read_adapter(tmp_path / "rs")["model.layers.0.self_attn.q_proj"].scale == pytest.approx(4.0)
    adapters.write_deltas(tmp_path / "d.safetensors", f)
    back = adapters.read_deltas(tmp_path / "d.safetensors")
    assert list(back) == list(f)
    assert all(torch.equal(back[k].A, f[k].A) and back[k].scale == f[k].scale for k in f)


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t.update({key(0, "q_proj", "B"): torch.randn(5, 3)}), r"q_proj has A \(4, 6\), B \(5, 3\); expected"),
    (lambda t: t.pop(key(0, "q_proj", "B")), "q_proj lacks lora_B"),
    (lambda t: t.update({"base_model.model.lm_head.weight": torch.randn(2, 2)}), "unexpected tensor"),
])
def test_bad_adapters_name_the_module(tmp_path, mutate, message):
    t = {key(0, p, w): torch.randn(4, 6) if w == "A" else torch.randn(5, 4) for p in ("q_proj", "k_proj") for w in "AB"}
    mutate(t)
    write_peft(tmp_path / "a", t)
    with pytest.raises(AdapterError, match=message):
        adapters.read_adapter(tmp_path / "a")


def test_not_lora_and_missing_files(tmp_path):
    write_peft(tmp_path / "a", {key(0, "q_proj", "A"): torch.randn(4, 6), key(0, "q_proj", "B"): torch.randn(5, 4)},
               peft_type="IA3")
    with pytest.raises(AdapterError, match="is not LORA"):
        adapters.read_adapter(tmp_path / "a")
    with pytest.raises(AdapterError, match="missing adapter_config.json"):
        adapters.read_adapter(tmp_path / "none")
    save_file({"x": torch.zeros(1)}, tmp_path / "plain.safetensors")
    with pytest.raises(AdapterError, match="no 'modules' metadata"):
        adapters.read_deltas(tmp_path / "plain.safetensors")


def test_seed_alignment_curve_reads_each_snapshot_step_and_skips_unmoved_ones(tmp_path):
    """analysis.seed_alignment on written snapshots (read by ``adapters.snapshot_pairs``): per step the two runs' u1 alignment and global cosine (by
    hand: identical adapters give 1 and 1; B -> -B flips the sign of the cosine, never |<u1,u1'>|), a step where
    one adapter has B = 0 left out, and snapshots of different steps refused."""
    from weightspace.model.adapters import snapshot_pairs
    from weightspace.weights.analysis import seed_alignment

    t = {key(L, p, w): torch.randn(4, 6) if w == "A" else torch.randn(5, 4) for L in (0, 1) for p in ("q_proj", "v_proj")
         for w in "AB"}
    flipped = {k: -v if k.endswith("lora_B.weight") else v for k, v in t.items()}
    zero = {k: torch.zeros_like(v) if k.endswith("lora_B.weight") else v for k, v in t.items()}
    for step, (a, b) in {2: (zero, t), 4: (t, t), 6: (t, flipped)}.items():
        write_peft(tmp_path / "run" / f"step_{step}", a)
        write_peft(tmp_path / "seed" / f"step_{step}", b)
    curve = seed_alignment(snapshot_pairs(tmp_path / "run", tmp_path / "seed"))
    assert [r["step"] for r in curve] == [4, 6]
    assert curve[0]["u1_alignment"] == pytest.approx(1.0) and curve[0]["cosine"] == pytest.approx(1.0)
    assert curve[1]["u1_alignment"] == pytest.approx(1.0) and curve[1]["cosine"] == pytest.approx(-1.0)
    assert curve[0]["angle_u1_median"] == pytest.approx(0.0, abs=1e-5)
    write_peft(tmp_path / "seed" / "step_8", t)
    with pytest.raises(ValueError, match="snapshots of different steps"):
        snapshot_pairs(tmp_path / "run", tmp_path / "seed")


def test_the_alignment_stage_refuses_snapshots_of_other_steps_than_training_kept(tmp_path):
    from conftest import REPO
    from weightspace.stages import alignment

    t = {key(0, "q_proj", w): torch.randn(4, 6) if w == "A" else torch.randn(5, 4) for w in "AB"}
    for side in ("run", "seed"):
        write_peft(tmp_path / "snaps" / side / "step_5", t)
    (tmp_path / "snaps" / "snapshots.json").write_text(json.dumps({"steps": [5, 10], "compare_step": 10}))
    argv = ["--params", str(REPO / "params.yaml"), "--method", "sft", "--snapshots", str(tmp_path / "snaps"),
            "--metrics", str(tmp_path / "m.json"), "--plots", str(tmp_path / "c.csv")]
    with pytest.raises(ValueError, match=r"holds steps \[5\], train@sft kept \[5, 10\]"):
        alignment.main(argv)
    (tmp_path / "snaps" / "snapshots.json").write_text(json.dumps({"steps": [5], "compare_step": 5}))
    alignment.main(argv)
    got = json.loads((tmp_path / "m.json").read_text())
    assert got["compare_step"]["step"] == 5 and got["compare_step"]["u1_alignment"] == pytest.approx(1.0)
    assert (tmp_path / "c.csv").read_text().splitlines()[0] == "step,u1_alignment,v1_alignment,angle_u1_median,cosine"
