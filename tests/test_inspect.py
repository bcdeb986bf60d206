"""`python -m weightspace.weights.inspect`: anyone's PEFT LoRA adapters, the geometry stage's code. It gives exactly the
stage's numbers on the pipeline's adapters (plumbing run), the dense float64 values on adapters saved directly
with PEFT at other ranks and with rsLoRA, and a clear error before any analysis for each bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from weightspace.weights import inspect as wi
from weightspace.tiny.model import build_model


def base_folder(path: Path, hidden=32, layers=2, seed=0) -> Path:
    build_model(vocab_size=64, hidden_size=hidden, layers=layers, heads=2, kv_heads=1, head_dim=16,
                intermediate_size=48, max_positions=64, seed=seed, eos_token_id=1, pad_token_id=0).save_pretrained(path)
    return path


def peft_adapter(base: Path, out: Path, r: int, alpha: float, rslora: bool, seed: int, **cfg) -> Path:
    """A LoRA adapter saved by PEFT on the model in ``base``, its B drawn (PEFT inits B = 0)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    torch.manual_seed(seed)
    peft = get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, use_rslora=rslora, lora_dropout=0.0,
                                            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], **cfg))
    with torch.no_grad():
        for n, p in peft.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    peft.save_pretrained(out)
    c = json.loads((out / "adapter_config.json").read_text())
    c["base_model_name_or_path"] = str(base)
    (out / "adapter_config.json").write_text(json.dumps(c))
    return out


def dense_deltas(folder: Path) -> dict[str, np.ndarray]:
    """Delta W per module from the saved files alone: scale * B @ A in float64."""
    cfg = json.loads((folder / "adapter_config.json").read_text())
    s = cfg["lora_alpha"] / (np.sqrt(cfg["r"]) if cfg["use_rslora"] else cfg["r"])
    t = load_file(folder / "adapter_model.safetensors")
    out = {}
    for k, a in t.items():
        if ".lora_A." in k:
            mod = k.removeprefix("base_model.model.").split(".lora_A.")[0]
            b = t[k.replace("lora_A", "lora_B")]
            out[mod] = s * b.double().numpy() @ a.double().numpy()
    return out


@pytest.fixture(scope="module")
def peft_pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("inspect")
    base = base_folder(d / "base")
    return base, peft_adapter(base, d / "r4_rslora", 4, 8, True, 1), peft_adapter(base, d / "r8", 8, 16, False, 2)


def test_adapters_of_other_ranks_and_rslora_give_the_dense_values(peft_pair, tmp_path):
    base, a, b = peft_pair
    assert wi.main(["--base", str(base), str(a), str(b), "--out", str(tmp_path / "out")]) == 0
    r = json.loads((tmp_path / "out/inspect.json").read_text())
    assert r["ranks"] == {"r4_rslora": 4, "r8": 8} and r["top_k"] == 4
    da, db = dense_deltas(a), dense_deltas(b)
    va = np.concatenate([da[m].ravel() for m in sorted(da)])
    vb = np.concatenate([db[m].ravel() for m in sorted(da)])
    assert r["pairwise"]["cosine"]["global"]["r4_rslora-r8"] == pytest.approx(va @ vb / np.linalg.norm(va) / np.linalg.norm(vb),
                                                                             rel=1e-10)
    w = load_file(base / "model.safetensors")
    # bf16 sparsity, module mean: share of entries with bf16(W0 + dW) == bf16(W0) (W0 is stored in float32 here)
    share = np.mean([np.mean((torch.from_numpy(w[f"{m}.weight"].double().numpy() + db[m]).to(torch.bfloat16)
                              == w[f"{m}.weight"].to(torch.bfloat16)).numpy()) for m in sorted(db)])
    assert r["pretrained"]["bf16_unchanged"]["r8"] == pytest.approx(share, abs=1e-12)
    stable = np.mean([np.linalg.norm(db[m]) ** 2 / np.linalg.norm(db[m], 2) ** 2 for m in sorted(db)])
    assert r["pretrained"]["stable_rank"]["r8"] == pytest.approx(stable, rel=1e-9)
    assert (tmp_path / "out/inspect.md").read_text().startswith("# LoRA adapters")
    assert (tmp_path / "out/figures/pretrained_per_layer.png").is_file()
    assert (tmp_path / "out/tables/pretrained_energy_left_per_layer.csv").is_file()


def refused(args: list[str], tmp_path, capsys, message: str) -> None:
    out = tmp_path / "refused"
    assert wi.main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not out.exists()  # nothing written


def test_a_non_lora_adapter_is_refused(peft_pair, tmp_path, capsys):
    base, a, _ = peft_pair
    ia3 = tmp_path / "ia3"
    shutil.copytree(a, ia3)
    cfg = json.loads((ia3 / "adapter_config.json").read_text())
    (ia3 / "adapter_config.json").write_text(json.dumps({**cfg, "peft_type": "IA3"}))
    refused(["--base", str(base), str(ia3)], tmp_path, capsys, "peft_type 'IA3' is not LORA")


@pytest.mark.parametrize("key,value,message", [("use_dora", True, "DoRA"),
                                               ("alpha_pattern", {"q_proj": 32}, "rank_pattern/alpha_pattern"),
                                               ("fan_in_fan_out", True, "fan_in_fan_out")])
def test_an_unsupported_scaling_is_refused(peft_pair, tmp_path, capsys, key, value, message):
    base, a, _ = peft_pair
    odd = tmp_path / "odd"
    shutil.copytree(a, odd)
    cfg = json.loads((odd / "adapter_config.json").read_text())
    (odd / "adapter_config.json").write_text(json.dumps({**cfg, key: value}))
    refused(["--base", str(base), str(odd)], tmp_path, capsys, message)


def test_an_adapter_of_another_base_is_refused(peft_pair, tmp_path, capsys):
    base, a, _ = peft_pair
    wider = base_folder(tmp_path / "wider", hidden=48)
    other = peft_adapter(wider, tmp_path / "other", 4, 8, False, 3)
    refused(["--base", str(base), str(a), str(other)], tmp_path, capsys, f"trained on {str(wider)!r}")
    # the same model under another name passes the id check with --any-base; the shapes still refuse it
    refused(["--base", str(base), "--any-base", str(other)], tmp_path, capsys, "the adapter was trained on another base")


def test_target_modules_missing_from_the_base_are_refused(peft_pair, tmp_path, capsys):
    base, _, _ = peft_pair
    deeper = base_folder(tmp_path / "deeper", layers=3)
    three = peft_adapter(deeper, tmp_path / "three", 4, 8, False, 4)
    refused(["--base", str(base), "--any-base", str(three)], tmp_path, capsys,
            "the checkpoint has no weight of 4 target module(s), e.g. ['model.layers.2.self_attn.k_proj'")


def test_inspect_gives_the_geometry_stages_numbers_on_the_pipelines_adapters(plumbing, tmp_path):
    """On the plumbing run: each method's final adapter (models/<m>; plumbing compares at the last step) through
    inspect with --base models/base gives the stage's W0-relative numbers and global cosines, bit for bit."""
    from weightspace import config

    root, _ = plumbing
    geo = json.loads((root / "metrics/geometry.json").read_text())
    methods = list(config.load(root / "params.yaml").methods)  # the stage's order, which names its pairs
    k = geo["pretrained"]["top_k"]
    assert wi.main(["--base", str(root / "models/base"), *[str(root / "models" / m) for m in methods],
                    "--out", str(tmp_path / "out"), "--top-k", str(k), "--reference", geo.get("reference", "sft")]) == 0
    r = json.loads((tmp_path / "out/inspect.json").read_text())
    for name, v in geo["pretrained"].items():
        if isinstance(v, dict) and "global" not in v:
            assert r["pretrained"][name] == v, name
    for p, c in geo["cosine"]["global"].items():
        assert r["pairwise"]["cosine"]["global"][p] == c, p
