"""Merging in Delta W space, masked-answer CE, pooled hidden states, and the compare stage's tables."""

from __future__ import annotations

import pytest
import torch

from test_training import peft_model, rows_table, small_model
from conftest import REPO
from weightspace.tiny import model as tiny
from weightspace.model.adapters import read_adapter
from weightspace.generate.merge import Merger
from weightspace.function.function_space import answer_ce, answer_items, pooled_hidden_states
from weightspace.function.stats import compare_set
from weightspace.core.tables import read_csv
from weightspace.function.function_space import barrier


@pytest.fixture(scope="module")
def tok():
    return tiny.train_tokenizer([r["prompt"] + " " + r["completion"] for r in rows_table()] * 5, 300)


def trained_adapter(tok, tmp_path, name, seed):
    model = peft_model(tok)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # both factors differ between adapters, as after training
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
            if "lora_A" in n:
                p.add_(torch.randn(p.shape, generator=g) * 0.2)
    model.save_pretrained(tmp_path / name)
    return model


def test_merge_endpoints_and_midpoint_match_peft(tok, tmp_path):
    from peft import PeftModel

    trained_adapter(tok, tmp_path, "a", 1)
    trained_adapter(tok, tmp_path, "b", 2)
    fa, fb = read_adapter(tmp_path / "a"), read_adapter(tmp_path / "b")
    items = answer_items(tok, [r["prompt"] for r in rows_table()[:6]], ["5", "6", "7", "8", "9", "10"])
    base = small_model(tok).eval()
    merger = Merger(base, list(fa))
    for alpha, name in ((1.0, "a"), (0.0, "b")):
        merger.set([(alpha, fa), (1 - alpha, fb)])
        peft = PeftModel.from_pretrained(small_model(tok), tmp_path / name).eval()
        assert answer_ce(base, items, tok.pad_token_id, 4) == pytest.approx(
            answer_ce(peft, items, tok.pad_token_id, 4), rel=1e-5)
    # alpha = 0.3: PEFT's exact "cat" combination of the two adapters
    merger.set([(0.3, fa), (0.7, fb)])
    peft = PeftModel.from_pretrained(small_model(tok), tmp_path / "a", adapter_name="a")
    peft.load_adapter(tmp_path / "b", adapter_name="b")
    peft.add_weighted_adapter(["a", "b"], [0.3, 0.7], "mix", combination_type="cat")
    peft.set_adapter("mix")
    merged = peft.merge_and_unload().eval()
    for name in fa:
        assert torch.allclose(base.get_submodule(name).weight, merged.get_submodule(name).weight, atol=1e-6)
    # factor-space interpolation is NOT the same model (the cross terms)
    fake = {k: type(f)(0.3 * f.A + 0.7 * fb[k].A, 0.3 * f.B + 0.7 * fb[k].B, f.scale, f.layer, f.proj)
            for k, f in fa.items()}
    w_ours = base.get_submodule(next(iter(fa))).weight.clone()
    merger.set([(1.0, fake)])
    assert not torch.allclose(w_ours, base.get_submodule(next(iter(fa))).weight, atol=1e-4)
    merger.reset()
    assert torch.equal(base.get_submodule(next(iter(fa))).weight, merger.w0[next(iter(fa))])


def test_barrier_by_hand():
    a = [0.0, 0.25, 0.5, 0.75, 1.0]
    assert barrier(a, [1.0, 1.5, 2.0, 2.5, 3.0]) == 0.0  # on the chord
    assert barrier(a, [1.0, 1.2, 1.1, 1.0, 1.0]) == pytest.approx(0.2)  # convex-ish bump: 1.2 - 1.0
    # paper's RIFT <-> DPO: 3.82 -> 7.06 -> 8.64 on (0, .5, 1): chord at .5 is 6.23, barrier 0.83
    assert barrier([0, 0.5, 1], [3.82, 7.06, 8.64]) == pytest.approx(0.83)


def test_answer_items_continue_right_after_the_prompt(tok):
    (it,) = answer_items(tok, ["Ana has 2 cups."], ["17"])
    assert tok.decode(list(it.completion)) == "\\boxed{17}"
    assert tok.decode(list(it.prompt)).endswith("<|im_start|>assistant\n")


def test_pooled_states_ignore_padding_and_batching(tok):
    model = small_model(tok).eval()
    prompts = [r["prompt"] for r in rows_table()[::4]] + ["Ana has 2 cups and many more words here. How many?"]
    together = pooled_hidden_states(model, tok, prompts, batch=8)
    one_by_one = pooled_hidden_states(model, tok, prompts, batch=1)
    assert len(together) == 2 and together[0].shape == (5, 32)
    for a, b in zip(together, one_by_one):
        assert torch.allclose(a, b, atol=1e-5)


def rec(ids, correct):
    return [{"id": i, "correct": c} for i, c in zip(ids, correct)]


def test_compare_set_pairs_holm_and_intervals():
    ids = [f"q{i}" for i in range(10)]
    out = compare_set({"base": rec(ids, [0] * 10), "x": rec(ids, [1] * 8 + [0] * 2), "y": rec(ids, [1] * 10)},
                      0.95, 100, 0, 0.05)
    assert out["x"]["acc"] == 0.8 and out["x"]["lo"] == pytest.approx(0.4902, abs=1e-4)
    # base-x: n10 = 0, n01 = 8: p = 2 / 2^8; base-y: 2 / 2^10; x-y: n01 = 2: p = 0.5 -> Holm x3, x2, x1
    assert out["base-x"]["p"] == pytest.approx(2 / 256) and out["base-x"]["p_holm"] == pytest.approx(4 / 256)
    assert out["base-y"]["p_holm"] == pytest.approx(6 / 1024)
    assert out["x-y"]["p_holm"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="not paired"):
        compare_set({"a": rec(ids, [1] * 10), "b": rec(ids[::-1], [1] * 10)}, 0.95, 10, 0, 0.05)
    # x-y: n10 = 0, n01 = 2 of 10: d = -0.2, se = sqrt((0.2 - 0.04) / 10) = 0.12649
    assert out["x-y"]["diff"] == pytest.approx(-0.2) and out["x-y"]["se"] == pytest.approx(0.126491, abs=1e-6)


def test_tost_paired_by_hand_and_against_the_per_item_differences():
    """n = 100, n10 = 10, n01 = 5, margin 0.1: d = 0.05, se = sqrt((0.15 - 0.0025) / 100) = 0.0384057;
    upper test z = (0.1 - 0.05) / se = 1.30189, p = 1 - Phi(1.30189) = 0.09648 (the lower one is far
    smaller); then the same from the 100 per-item differences with numpy (population sd / sqrt(n))."""
    import numpy as np
    from scipy.stats import norm

    from weightspace.function.stats import tost_paired

    t = tost_paired(10, 5, 100, 0.1)
    assert t["diff"] == pytest.approx(0.05) and t["se"] == pytest.approx(0.0384057, abs=1e-7)
    assert t["p"] == pytest.approx(0.09648, abs=1e-5)  # normal table, interpolated
    x = np.array([1] * 10 + [-1] * 5 + [0] * 85, dtype=float)
    se = x.std() / np.sqrt(len(x))
    assert t["p"] == pytest.approx(max(norm.sf((x.mean() + 0.1) / se), norm.sf((0.1 - x.mean()) / se)), rel=1e-12)
    # equivalence shown at 5% exactly when the 90% interval lies inside (-margin, margin)
    for n10, n01 in ((30, 10), (12, 10), (50, 49), (0, 0), (3, 0)):
        r = tost_paired(n10, n01, 400, 0.05)
        inside = abs(r["diff"]) + norm.ppf(0.95) * r["se"] < 0.05
        assert (r["p"] < 0.05) == inside, (n10, n01, r)
    with pytest.raises(ValueError, match="impossible counts"):
        tost_paired(60, 50, 100, 0.05)
    with pytest.raises(ValueError, match="margin"):
        tost_paired(1, 1, 100, 0.0)


def test_heldout_size_follows_the_declared_tost_power_calculation():
    """(1.6449 + 1.6449)^2 * 0.2 / 0.05^2 = 865.8 -> 866 items; the default's held-out set is at least that,
    at the declared margin (tost_sample_size's docstring)."""
    from weightspace.config import load
    from weightspace.function.stats import tost_sample_size

    assert tost_sample_size(0.05, 0.2) == 866
    p = load(REPO / "params.yaml")
    assert p.compare.margin == 0.05 and p.prepare.eval["heldout"].n >= tost_sample_size(p.compare.margin, 0.2)



def test_compare_stage_scores_the_seed_twins_beside_the_methods(tmp_path):
    """compare with --twins: ``seed_twins.<set>`` holds the same metrics with each method replaced by
    its twin's records; the base (no twin folder) is shared. The models are the base and ``methods``.
    Hand-checked: base 0/10 right, sft 8/10 and its twin 5/10, so base-sft p = 2/2^8 and base-sft
    (twins) p = 2/2^5."""
    import json

    from weightspace.data.datasets import write_jsonl
    from weightspace.stages.compare import main

    ids = [f"q{i}" for i in range(10)]
    others = ("rft", "dft", "rift", "grpo", "dpo")
    for folder, model, correct in (("evals", "base", [0] * 10), ("evals", "sft", [1] * 8 + [0] * 2),
                                   ("twins", "sft", [1] * 5 + [0] * 5), *(("evals", m, [1] * 10) for m in others)):
        write_jsonl(tmp_path / folder / model / "heldout.jsonl", rec(ids, correct))
    main(["--params", str(REPO / "params.yaml"), "--evals", str(tmp_path / "evals"),
          "--twins", str(tmp_path / "twins"), "--metrics", str(tmp_path / "acc.json"),
          "--plots", str(tmp_path / "plots")])
    m = json.loads((tmp_path / "acc.json").read_text())
    assert m["heldout"]["sft"]["acc"] == 0.8 and m["heldout"]["base-sft"]["p"] == pytest.approx(2 / 256)
    assert {"base", "sft", *others, "base-sft", "sft-dpo"} <= set(m["heldout"])
    tw = m["seed_twins"]["heldout"]
    assert tw["sft"]["acc"] == 0.5 and tw["base"]["acc"] == 0.0 and tw["base-sft"]["p"] == pytest.approx(2 / 32)
    assert tw["dpo"]["acc"] == 1.0  # no twin folder: the method's own records
    table = read_csv(tmp_path / "plots" / "heldout.csv")
    assert list(table.columns) == ["model", "acc", "lo", "hi"] and table["acc"].tolist()[:2] == [0.0, 0.8]


def test_evaluate_pairs_adapters_with_output_folders_before_any_compute(tmp_path):
    from weightspace.stages.evaluate import main

    with pytest.raises(ValueError, match="2 adapters .* but 1 output folders"):
        main(["--params", str(REPO / "params.yaml"), "--base", str(tmp_path / "absent"), "--adapter", "a,b",
              "--data", str(tmp_path), "--out", str(tmp_path / "one")])
    assert not (tmp_path / "one").exists()

def dpo_sized_factors(model, r=8, seed=0, size=2e-5):
    """A rank-r delta per target module whose entries (~``size``) sit below bf16's rounding step at
    |W0| ~ 0.02 (about 6e-5): DPO's update next to a 4B model's attention weights."""
    from weightspace.model.adapters import Factor

    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, mod in model.named_modules():
        if name.endswith(("q_proj", "k_proj", "v_proj", "o_proj")):
            d_out, d_in = mod.weight.shape
            A = torch.randn(r, d_in, generator=g, dtype=torch.float64) / d_in**0.5
            B = torch.randn(d_out, r, generator=g, dtype=torch.float64) * size / r**0.5
            out[name] = Factor(A, B, 2.0, int(name.split(".")[2]), name.rsplit(".", 1)[-1])
    return out


def test_bf16_merge_keeps_a_dpo_sized_delta_exact(tok):
    model = small_model(tok)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, mod in model.named_modules():
            if name.endswith(("q_proj", "k_proj", "v_proj", "o_proj")):
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * 0.02)  # W0 ~ N(0, 0.02^2)
    model = model.to(torch.bfloat16).eval()
    factors = dpo_sized_factors(model)
    name = next(iter(factors))
    w0 = model.get_submodule(name).weight.detach().to(torch.float64).clone()
    dw = factors[name].scale * factors[name].B @ factors[name].A
    # the defect this guards against: bf16(W0 + dW) - W0 keeps almost none of dW
    naive = (w0 + dw).to(torch.bfloat16).to(torch.float64) - w0
    assert (naive == 0).double().mean() > 0.8
    merger = Merger(model, list(factors))
    merger.set([(1.0, factors)])
    for n, f in factors.items():
        landed = model.get_submodule(n).weight.detach().to(torch.float64) - merger.w0[n].to(torch.float64)
        true = f.scale * f.B @ f.A
        assert model.get_submodule(n).weight.dtype == torch.float32
        assert (landed - true).abs().max() <= 4e-9  # fp32 rounding of W0 + dW at |W| ~ 0.1: ulp 7.5e-9
        assert torch.nn.functional.cosine_similarity(landed.flatten(), true.flatten(), dim=0) > 0.9999
    # the bf16 model still runs end to end, in bf16 outside the adapted modules
    items = answer_items(tok, [r["prompt"] for r in rows_table()[:4]], ["5", "6", "7", "8"])
    ce_merged = answer_ce(model, items, tok.pad_token_id, 4)
    merger.reset()
    assert torch.equal(model.get_submodule(name).weight.detach().to(torch.float64), w0)
    assert ce_merged != answer_ce(model, items, tok.pad_token_id, 4)  # the delta reaches the function


def test_hf_engine_merges_an_adapter_exactly_into_a_bf16_base(tok, tmp_path, monkeypatch):
    from weightspace import config
    from weightspace.generate import generation
    from weightspace.model import models

    model = small_model(tok).to(torch.bfloat16)
    peft = trained_adapter(tok, tmp_path, "a", 3)
    monkeypatch.setattr(models, "load_base", lambda base, dtype, device: (model, tok))
    gen = config.Generation(engine="hf", temperature=0.0, top_p=1.0, max_new_tokens=4, batch_size=2, seed=0,
                            max_model_len=None, gpu_memory_utilization=None, openai=None)
    monkeypatch.setattr(tok, "padding_side", "left")
    engine = generation.make_engine(gen, "unused", [str(tmp_path / "a")])
    engine.use(str(tmp_path / "a"))
    for name, f in read_adapter(tmp_path / "a").items():
        w = engine.model.get_submodule(name).weight.detach().to(torch.float64)
        w0 = peft.get_submodule(f"base_model.model.{name}").base_layer.weight.detach().to(torch.bfloat16)
        assert torch.allclose(w - w0.to(torch.float64), f.scale * f.B @ f.A, atol=1e-7)


def test_cka_layers_are_block_outputs_the_last_one_before_the_final_norm(tok):
    from weightspace.function.function_space import block_outputs

    model = small_model(tok).eval()
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        hf = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True).hidden_states
        ours = block_outputs(model, ids, torch.ones_like(ids))
    assert len(ours) == model.config.num_hidden_layers == len(hf) - 1
    assert all(torch.equal(a, b) for a, b in zip(ours[:-1], hf[1:-1]))
    # HF's last hidden state is after the final norm; ours is the block output that the norm receives
    assert not torch.allclose(ours[-1], hf[-1]) and torch.allclose(model.model.norm(ours[-1]), hf[-1])
