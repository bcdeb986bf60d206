"""The shared training loop on a small random Qwen3, in process: what moves, what does not, and the
bookkeeping that makes the six methods differ only in their loss."""

from __future__ import annotations

import math

import pytest
import torch

from weightspace.core.units import Mismatch
from weightspace import config
from weightspace import registry
from weightspace.tiny import model as tiny
from weightspace.train.training import (Item, LossFn, TrainingError, collate, encode_rows, lora_sha256, reference_logps,
                                  fit_model, select, sequence_logps, train, unit_items)


def rows_table():
    """4 groups x 4 rollouts: group 0 all right, 1 mixed (2/4), 2 all wrong, 3 mixed (1/4)."""
    rewards = [[1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 0, 0], [0, 0, 1, 0]]
    rows = []
    for g, rs in enumerate(rewards):
        for j, r in enumerate(rs):
            rows.append({"row": len(rows), "group": g, "prompt": f"Ana has {g + 2} cups. How many?",
                         "completion": f"Ana starts with {g + 2}. {g + 2} + {j} = {g + j + 2}. \\boxed{{{g + j + 2}}}",
                         "reward": r, "truncated": j == 3})
    return rows


@pytest.fixture(scope="module")
def tok():
    texts = [r["prompt"] + " " + r["completion"] for r in rows_table()] * 5
    return tiny.train_tokenizer(texts, 300)


def small_model(tok, seed=0):
    return tiny.build_model(len(tok), 32, 2, 2, 1, 16, 64, 128, seed, tok.eos_token_id, tok.pad_token_id)


def peft_model(tok, seed=0):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    return get_peft_model(small_model(tok), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj",
                                                                                            "o_proj"], lora_dropout=0.0))


def train_cfg(**kw):
    lora = config.Lora(r=4, alpha=8, dropout=0.0, target_modules=("q_proj", "k_proj", "v_proj", "o_proj"),
                       use_rslora=False)
    base = dict(launcher="python", seed=0, steps=4, compare_step=None, batch_size=8, micro_batch_size=8, warmup_ratio=0.0,
                weight_decay=0.01, grad_clip=1.0, max_length=64, bf16=False, gradient_checkpointing=False, checkpoint_every=None,
                lora=lora)
    base.update(kw)
    return config.Train(**base)


def run_method(tok, method, mcfg, cfg=None, model=None, lr=1e-2):
    from accelerate import Accelerator

    rows = rows_table()
    order = list(reversed(range(len(rows))))
    model = model or peft_model(tok)
    cfg = cfg or train_cfg()
    return model, fit_model(model, Accelerator(cpu=True), registry.get(method), mcfg, rows, order, cfg, lr, tok)


def test_select_rows_per_method():
    rows, order = rows_table(), list(reversed(range(16)))
    sft, rft = registry.get("sft").params(lr=1e-2), registry.get("rft").params(lr=1e-2)
    one, every = registry.get("dpo").params(lr=1e-3, beta=0.1, pairing="one"), registry.get("dpo").params(lr=1e-3, beta=0.1, pairing="all")
    assert select(registry.get("sft"), rows, order, sft) == order
    assert select(registry.get("rft"), rows, order, rft) == [i for i in order if rows[i]["reward"]]
    # one pair per mixed group, first correct and first incorrect in the persisted order; groups by first row
    assert select(registry.get("dpo"), rows, order, one) == [(14, 15), (6, 7)]
    assert len(select(registry.get("dpo"), rows, order, every)) == 1 * 3 + 2 * 2
    none_right = [dict(r, reward=0) for r in rows]
    with pytest.raises(TrainingError, match="method rft: 0 training units: no correct rollouts among 16"):
        select(registry.get("rft"), none_right, order, rft)
    with pytest.raises(TrainingError, match="method dpo: 0 training units: no mixed groups"):
        select(registry.get("dpo"), none_right, order, one)


def test_select_unpaired_units_borrow_a_completion_from_another_prompt(tok):
    rows, order = rows_table(), list(reversed(range(16)))
    kto = registry.get("kto").params(lr=1e-2, beta=0.1, desirable_weight=1.0, undesirable_weight=1.0)
    units = select(registry.get("kto"), rows, order, kto)
    # every row once, in order; its partner: the nearest earlier row (cyclically) of another group
    assert [u[0] for u in units] == order
    assert units[0] == (15, 0) and units[1] == (14, 0) and units[4] == (11, 12)
    assert all(rows[i]["group"] != rows[j]["group"] for i, j in units)
    items = encode_rows(tok, rows, 64)
    own, mismatched = unit_items(units[4], items)
    assert own == items[11] and mismatched.prompt == items[11].prompt and mismatched.completion == items[12].completion
    # a borrowed completion is cut to the longer of the two real sequences (each within train.max_length)
    long_prompt = {0: Item(0, (1,) * 50, (2,) * 10), 1: Item(1, (3,) * 10, (4,) * 54)}
    _, kl = unit_items(Mismatch((0, 1)), long_prompt)
    assert kl.prompt == (1,) * 50 and kl.completion == (4,) * 14 and len(kl.prompt) + len(kl.completion) == 64
    # the pair losses' rows come from the registry too: IPO and SimPO take DPO's pairs
    pairs = select(registry.get("dpo"), rows, order, registry.get("dpo").params(lr=1e-3, beta=0.1, pairing="one"))
    assert select(registry.get("ipo"), rows, order, registry.get("ipo").params(lr=1e-3, tau=0.1, pairing="one")) == pairs
    assert select(registry.get("simpo"), rows, order, registry.get("simpo").params(lr=1e-3, beta=2.0, gamma=1.0, pairing="one")) == pairs


@pytest.mark.parametrize("method, mcfg, first", [
    ("ipo", registry.get("ipo").params(lr=1e-2, tau=0.1, pairing="all"), 25.0),  # policy == reference: 1/(4 tau^2)
    # at the shared init (policy == reference, z0 = 0) each row's loss is weight/2: the first 4 units of
    # the order are rows 15, 14, 13, 12 (group 3: rewards 0, 1, 0, 0) -> (1.5 + 0.5 + 1.5 + 1.5) / 4
    ("kto", registry.get("kto").params(lr=1e-2, beta=0.1, desirable_weight=1.0, undesirable_weight=3.0), 1.25),
    ("simpo", registry.get("simpo").params(lr=1e-2, beta=2.0, gamma=1.0, pairing="all"), None),
])
@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_the_extra_preference_losses_train_only_lora(tok, method, mcfg, first, precision):
    # under bf16 autocast too: the reference runs at the policy's precision on its batch, so the
    # first loss at the shared init keeps its exact value
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)  # a process-wide singleton; each case sets its precision
    rows = rows_table()
    model = peft_model(tok)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    units = select(registry.get(method), rows, list(reversed(range(16))), mcfg)
    logged = []
    train(model, Accelerator(cpu=True, mixed_precision=precision), method, units, encode_rows(tok, rows, 64),
          LossFn(registry.get(method), mcfg, rows), train_cfg(steps=3, batch_size=4, micro_batch_size=4), 1e-2, tok.pad_token_id,
          on_step=lambda s, loss, lr: logged.append(loss))
    AcceleratorState._reset_state(True)
    after = dict(model.named_parameters())
    assert all(torch.equal(p, after[n]) for n, p in before.items() if "lora_" not in n)
    assert any(not torch.equal(p, after[n]) for n, p in before.items() if "lora_B" in n)
    assert len(logged) == 3 and all(math.isfinite(x) for x in logged)
    if first is not None:
        assert logged[0] == pytest.approx(first, rel=1e-6)


def test_collate_masks_exactly_the_completion_tokens():
    items = [Item(0, (5, 6, 7), (8, 9)), Item(1, (5,), (8, 9, 10, 11))]
    b = collate(items, pad_id=0)
    assert b["input_ids"].tolist() == [[5, 6, 7, 8, 9], [5, 8, 9, 10, 11]]
    # logp[t] scores token t+1: completion tokens sit at positions 3,4 and 1..4
    assert b["completion_mask"].tolist() == [[0, 0, 1, 1], [1, 1, 1, 1]]


def test_encode_rows_appends_eos_unless_truncated(tok):
    items = encode_rows(tok, rows_table(), 64)
    assert items[0].completion[-1] == tok.eos_token_id
    assert items[3].completion[-1] != tok.eos_token_id  # truncated row


def test_only_lora_moves_and_save_load_gives_identical_logits(tok, tmp_path):
    from peft import PeftModel

    model = peft_model(tok)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model, summary = run_method(tok, "sft", registry.get("sft").params(lr=1e-2))
    after = dict(model.named_parameters())
    for n, p in before.items():
        if "lora_" in n:
            continue
        assert torch.equal(p, after[n]), f"base weight {n} changed"
    assert any(not torch.equal(p, after[n]) for n, p in before.items() if "lora_B" in n)
    model.eval()
    model.save_pretrained(tmp_path / "a")
    batch = collate(list(encode_rows(tok, rows_table(), 64).values())[:4], tok.pad_token_id)
    reloaded = PeftModel.from_pretrained(small_model(tok), tmp_path / "a").eval()
    with torch.no_grad():
        assert torch.equal(model(input_ids=batch["input_ids"]).logits, reloaded(input_ids=batch["input_ids"]).logits)
    assert summary["steps"] == 4 and math.isfinite(summary["final_loss"])


def test_micro_batches_add_up_to_the_effective_batch(tok):
    # the token normaliser counts the whole effective batch, so 4 micro-batches of 2 = 1 batch of 8
    a, _ = run_method(tok, "grpo", registry.get("grpo").params(lr=1e-2, bias=0.1, std_norm="none", bias_scope="all"))
    b, _ = run_method(tok, "grpo", registry.get("grpo").params(lr=1e-2, bias=0.1, std_norm="none", bias_scope="all"),
                      cfg=train_cfg(micro_batch_size=2))
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.allclose(p, q, atol=1e-6, rtol=1e-4), n


def test_same_init_same_data_different_loss_different_delta(tok):
    deltas = {}
    for m, mcfg in {"sft": registry.get("sft").params(lr=1e-2), "dft": registry.get("dft").params(lr=1e-2),
                    "rift": registry.get("rift").params(lr=1e-2, variant="token", neg_lambda=0.2)}.items():
        model = peft_model(tok)
        assert lora_sha256(model) == lora_sha256(peft_model(tok))  # shared init
        model, _ = run_method(tok, m, mcfg, model=model)
        deltas[m] = torch.cat([p.detach().flatten() for n, p in model.named_parameters() if "lora_B" in n])
    assert not torch.equal(deltas["sft"], deltas["dft"]) and not torch.equal(deltas["sft"], deltas["rift"])


def test_dpo_reference_is_the_base(tok):
    model = peft_model(tok)
    with torch.no_grad():  # give the adapter a non-zero delta, so "adapter disabled" matters
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    items = encode_rows(tok, rows_table(), 64)
    batch = collate([items[i] for i in (0, 1, 2)], tok.pad_token_id)
    ref = reference_logps(model, batch)
    base = small_model(tok).eval()
    with torch.no_grad():
        lp, mask = sequence_logps(base, batch)
        pol, _ = sequence_logps(model, batch)
    assert ref.tolist() == pytest.approx((lp * mask).sum(-1).tolist(), abs=1e-5)
    assert abs(((pol - lp) * mask).sum().item()) > 1e-2  # the adapter does change the policy


@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_first_dpo_loss_at_the_shared_init_is_log2(tok, precision):
    # At the shared init (B = 0) policy == reference, so every pair's loss is -log sigmoid(0) = log 2.
    # Under bf16 autocast this holds only if the reference runs at the policy's precision on its batch.
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)  # the state is a process-wide singleton; each case sets its precision
    rows = rows_table()
    logged = []
    units = select(registry.get("dpo"), rows, list(range(16)), registry.get("dpo").params(lr=1e-3, beta=0.1, pairing="all"))
    if precision == "bf16":  # the test can fail: an fp32 reference beside a bf16 policy is not the policy
        model, batch = peft_model(tok), collate(list(encode_rows(tok, rows, 64).values())[:4], tok.pad_token_id)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            pol = reference_logps(model, batch)
        assert (pol - reference_logps(model, batch)).abs().max().item() > 1e-3
    train(peft_model(tok), Accelerator(cpu=True, mixed_precision=precision), "dpo", units, encode_rows(tok, rows, 64),
          LossFn(registry.get("dpo"), registry.get("dpo").params(lr=1e-3, beta=0.1, pairing="all"), rows),
          train_cfg(steps=1, batch_size=4, micro_batch_size=2), 1e-3, tok.pad_token_id,
          on_step=lambda s, loss, lr: logged.append(loss))
    AcceleratorState._reset_state(True)
    assert logged[0] == pytest.approx(math.log(2), abs=1e-6)


def test_non_finite_loss_stops_with_the_step(tok, monkeypatch):
    from weightspace.registry import sft

    calls = {"n": 0}
    real = sft.sft_loss

    def flaky(logp, mask, normaliser):
        calls["n"] += 1
        out = real(logp, mask, normaliser)
        return out * float("nan") if calls["n"] == 3 else out

    monkeypatch.setattr(sft, "sft_loss", flaky)
    with pytest.raises(TrainingError, match="method sft: non-finite loss nan at step 3"):
        run_method(tok, "sft", registry.get("sft").params(lr=1e-2))


def test_a_killed_run_resumes_from_its_checkpoint_to_the_same_bits(tok, tmp_path):
    from accelerate import Accelerator

    from weightspace.train.checkpoints import Checkpoints

    rows, cfg = rows_table(), train_cfg(steps=6, checkpoint_every=2, batch_size=4, micro_batch_size=4, warmup_ratio=0.2)
    items, units = encode_rows(tok, rows, 64), select(registry.get("sft"), rows, list(range(16)), registry.get("sft").params(lr=1e-2))

    def run(model, ckpt, on_step=None):
        return train(model, Accelerator(cpu=True), "sft", units, items, LossFn(registry.get("sft"), registry.get("sft").params(lr=1e-2), rows), cfg,
                     1e-2, tok.pad_token_id, on_step=on_step, checkpoints=ckpt)

    whole = peft_model(tok)
    run(whole, None)

    class Killed(Exception):
        pass

    def kill_at_5(step, loss, lr):
        if step == 5:
            raise Killed
    with pytest.raises(Killed):
        run(peft_model(tok), Checkpoints(tmp_path / "ck", 2, "run"), kill_at_5)
    assert [p.name for p in (tmp_path / "ck").iterdir()] == ["step-4"]  # step 5 ran, but no checkpoint was due
    steps = []
    resumed = peft_model(tok)
    summary = run(resumed, Checkpoints(tmp_path / "ck", 2, "run"), lambda s, loss, lr: steps.append(s))
    assert steps == [1, 2, 3, 4, 5, 6] and summary["resumed_from_step"] == 4  # 1-4 replayed from the history
    for (n, p), (_, q) in zip(whole.named_parameters(), resumed.named_parameters()):
        assert torch.equal(p, q), n
    other = peft_model(tok)  # a checkpoint of another run (other fingerprint) is never resumed from
    assert run(other, Checkpoints(tmp_path / "ck", 2, "another run"))["resumed_from_step"] == 0


@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_dpo_reference_is_computed_once_per_distinct_micro_batch_with_the_same_result(tok, monkeypatch, precision):
    """7 pairs, 2 per step: the micro-batches repeat every 7 steps, so 14 steps need 7 reference passes;
    the adapter is bit-identical to one trained with a reference pass on every step (fp32 and under the
    paper profile's bf16 autocast)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from weightspace.train import training

    calls = []
    real = training.reference_logps
    monkeypatch.setattr(training, "reference_logps", lambda m, b: calls.append(1) or real(m, b))
    rows, mcfg = rows_table(), registry.get("dpo").params(lr=1e-2, beta=0.1, pairing="all")
    cfg = train_cfg(steps=14, batch_size=2, micro_batch_size=2)
    units = select(registry.get("dpo"), rows, list(reversed(range(len(rows)))), mcfg)
    assert len(units) == 7
    weights = {}
    for reuse in (True, False):
        model = peft_model(tok)
        calls.clear()
        AcceleratorState._reset_state(True)  # a process-wide singleton; each case sets its precision
        train(model, Accelerator(cpu=True, mixed_precision=precision), "dpo", units,
              encode_rows(tok, rows, cfg.max_length), LossFn(registry.get("dpo"), mcfg, rows), cfg, 1e-2, tok.pad_token_id,
              reuse_reference=reuse)
        AcceleratorState._reset_state(True)
        assert len(calls) == (7 if reuse else 14)
        weights[reuse] = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    assert all(torch.equal(weights[True][n], weights[False][n]) for n in weights[True])
    assert any(weights[True][n].abs().sum() > 0 for n in weights[True] if "lora_B" in n)  # it trained


POLICY_STEP = r"""
import json, resource, sys
import torch
import peft, transformers.models.qwen3.modeling_qwen3  # imported before the baseline
from accelerate import Accelerator
from weightspace import config
from weightspace.train.training import load_policy, sequence_logps, collate, Item

def status_kib(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key + ":"))

base, init, bf16 = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
cfg = config.Train(**json.loads(sys.argv[4]))
acc = Accelerator(cpu=True, mixed_precision="bf16" if bf16 else "no")
before, anon_before = status_kib("VmRSS"), status_kib("RssAnon")
model, tok = load_policy(base, init, cfg)
model.train()
batch = collate([Item(i, (1, 2, 3), tuple(range(4, 36))) for i in range(2)], tok.pad_token_id)
with acc.autocast():
    logp, mask = sequence_logps(model, batch)
(-(logp * mask).sum()).backward()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux: the process's high-water mark
dtypes = {n: str(p.dtype) for n, p in model.named_parameters()}
param_kib = sum(p.numel() * p.element_size() for p in model.parameters()) // 1024
print(json.dumps({"peak_over_start_kib": peak - before, "anon_kib": status_kib("RssAnon") - anon_before,
                  "param_kib": param_kib, "dtypes": dtypes,
                  "lora_grads": all(p.grad is not None for n, p in model.named_parameters() if "lora_" in n)}))
"""


def test_bf16_training_loads_bf16_base_weights_and_fp32_lora_in_less_memory(tok, tmp_path):
    """``train.bf16``: ``load_policy`` gives bf16 base weights and fp32 LoRA factors, and one training step
    (forward under autocast, backward) of a random Qwen3 whose weights dominate memory (hidden 512, 8 layers:
    134 MB in fp32; stored in bf16 like Qwen3's checkpoints) holds about half the memory of the fp32-weights
    path. Each path runs in a fresh subprocess (torch's CPU allocator keeps no statistics) and reports, from
    after its imports (torch, transformers' Qwen3, peft): the bytes of its parameters; the anonymous memory
    it holds after the step (``RssAnon``: weights, LoRA gradients); its peak RSS (``ru_maxrss``), printed
    only: it also counts the checkpoint's file pages mapped while loading, the same in both paths."""
    import json
    import os
    import subprocess
    import sys

    from peft import LoraConfig, get_peft_model

    base_dir, init_dir = tmp_path / "base", tmp_path / "init"
    big = tiny.build_model(len(tok), 512, 8, 8, 2, 64, 2048, 128, 0, tok.eos_token_id, tok.pad_token_id)
    big.to(torch.bfloat16).save_pretrained(base_dir)  # stored in bf16, as Qwen3's checkpoints are
    tok.save_pretrained(base_dir)
    torch.manual_seed(0)
    get_peft_model(big, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                   target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])).save_pretrained(init_dir)
    out = {}
    for bf16 in (False, True):
        cfg_json = train_cfg(bf16=bf16).model_dump_json()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        proc = subprocess.run([sys.executable, "-c", POLICY_STEP, str(base_dir), str(init_dir), str(int(bf16)),
                               cfg_json], capture_output=True, text=True, env=env, check=True)
        out[bf16] = json.loads(proc.stdout.strip().splitlines()[-1])
    for bf16, want in ((False, "torch.float32"), (True, "torch.bfloat16")):
        dt = out[bf16]["dtypes"]
        assert {d for n, d in dt.items() if "lora_" in n} == {"torch.float32"}
        assert {d for n, d in dt.items() if "lora_" not in n} == {want}
        assert out[bf16]["lora_grads"]
    print({bf16: {k: v for k, v in o.items() if k != "dtypes"} for bf16, o in out.items()})
    assert out[True]["param_kib"] < 0.51 * out[False]["param_kib"]  # bf16 weights; LoRA (0.4%) in fp32
    assert out[True]["anon_kib"] < 0.6 * out[False]["anon_kib"]


def test_first_dpo_loss_is_log2_with_bf16_base_weights(tok):
    """``train.bf16`` loads bf16 base weights (``load_policy``): at the shared init (B = 0) the policy's LoRA
    term is exactly 0, so under bf16 autocast policy == reference to the bit and the first loss is log 2."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from peft import LoraConfig, get_peft_model

    AcceleratorState._reset_state(True)
    rows, logged = rows_table(), []
    model = get_peft_model(small_model(tok).to(torch.bfloat16),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    assert {p.dtype for n, p in model.named_parameters() if "lora_" in n} == {torch.float32}
    dpo = registry.get("dpo").params(lr=1e-3, beta=0.1, pairing="all")
    train(model, Accelerator(cpu=True, mixed_precision="bf16"), "dpo", select(registry.get("dpo"), rows, list(range(16)), dpo),
          encode_rows(tok, rows, 64), LossFn(registry.get("dpo"), dpo, rows), train_cfg(steps=1, batch_size=4, micro_batch_size=2,
                                                                            bf16=True), 1e-3, tok.pad_token_id,
          on_step=lambda s, loss, lr: logged.append(loss))
    AcceleratorState._reset_state(True)
    assert logged[0] == pytest.approx(math.log(2), abs=1e-6)


def test_set_threads_sets_the_cublas_workspace_before_cuda_starts():
    """A fresh process as a stage starts: after ``set_threads`` the environment has
    CUBLAS_WORKSPACE_CONFIG=:4096:8 (deterministic cuBLAS) and CUDA is still uninitialised, so a CUDA
    stage's first cuBLAS call sees it; a value already in the environment is kept."""
    import json
    import os
    import subprocess
    import sys

    script = ("import json, os, sys; from weightspace.stages.common import set_threads; "
              "before = 'torch' in sys.modules; set_threads(1); import torch; "
              "print(json.dumps([before, os.environ.get('CUBLAS_WORKSPACE_CONFIG'), torch.cuda.is_initialized(), "
              "torch.are_deterministic_algorithms_enabled()]))")
    env = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    run = lambda e: json.loads(subprocess.run([sys.executable, "-c", script], env=e, capture_output=True, text=True,  # noqa: E731
                                              check=True).stdout.strip().splitlines()[-1])
    assert run(env) == [False, ":4096:8", False, True]
    assert run({**env, "CUBLAS_WORKSPACE_CONFIG": ":16:8"})[1] == ":16:8"
