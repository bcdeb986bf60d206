"""Online GRPO (TRL's GRPOTrainer, ``online.py``) in process: its reward is the rollout grader, its
prompts are the offline methods' prompts token for token, and its training moves only the LoRA weights,
repeatably. The pipeline run (``dvc exp run`` with grpo_online) and kill-and-rerun are in
test_pipeline.py; the real-model bf16 run in test_smollm2.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import test_training
from conftest import REPO, trl_prompt_ids
from weightspace.data import grading
from weightspace import registry
from weightspace.train import online, run
from weightspace.tiny import model as tiny
from weightspace.core.schema import ParamsError
from weightspace.model.sequences import prompt_ids

CASES = [json.loads(line) for line in (Path(__file__).parent / "data/grading_cases.jsonl").read_text().splitlines()]


def online_cfg(**kw):
    base = dict(lr=1e-3, steps=2, num_generations=4, batch_size=8, beta=0.0, temperature=1.0, top_p=1.0,
                max_completion_length=24, loss_type="dapo", engine="hf", gpu_memory_utilization=None)
    return registry.get("grpo_online").params(**{**base, **kw})


def train_cfg(**kw):
    return test_training.train_cfg(**{"micro_batch_size": 4, **kw})  # the loop tests' config, 2 micro-batches


def test_reward_gives_the_rollout_graders_verdicts_on_the_hand_labelled_table():
    # 68 outputs with verdicts derived by hand (tests/data/grading_cases.jsonl), as TRL passes them:
    # conversational (a list of messages) and plain strings; where math-verify itself errs (the paper's
    # reward follows it), the hand verdict is flipped, as in test_grading
    from test_grading import MATH_VERIFY_MISSES

    texts, golds = [c["output"] for c in CASES], [c["gold"] for c in CASES]
    want = [float(c["correct"] != (i in MATH_VERIFY_MISSES)) for i, c in enumerate(CASES)]
    conversational = [[{"role": "assistant", "content": t}] for t in texts]
    assert online.reward([None] * len(CASES), conversational, golds) == want
    assert online.reward([None] * len(CASES), texts, golds, trainer_state=None) == want
    assert want == [float(grading.grade(t, g).reward) for t, g in zip(texts, golds)]  # the rollouts' labels
    assert 0 < sum(want) < len(want)


def test_prompts_are_one_per_group_and_tokenise_as_the_offline_methods_do():
    rows = [{"row": i, "group": g, "prompt": f"Ana has {g} cups. How many?", "gold": str(g)}
            for i, g in enumerate([0, 0, 1, 1, 2, 2])]
    recs = online.prompt_records(rows, [5, 4, 0, 1, 2, 3])
    assert [r["group"] for r in recs] == [2, 0, 1] and [r["gold"] for r in recs] == ["2", "0", "1"]
    tok = tiny.train_tokenizer([r["prompt"] for r in rows] * 5, 300)
    # TRL's own prompt tokenisation (GRPOTrainer._tokenize_prompts) on the records, against ours
    assert trl_prompt_ids(tok, [r["prompt"] for r in recs]) == [prompt_ids(tok, rows[5]["prompt"]), prompt_ids(tok, rows[0]["prompt"]),
                                      prompt_ids(tok, rows[2]["prompt"])]


def test_offline_and_online_runs_follow_one_lr_schedule():
    """training.schedule (the offline loop's) gives, step for step, the LRs of the scheduler TRL's trainer builds
    from the online run's GRPOConfig (transformers' Trainer.create_scheduler): from 0 up to the peak over the
    warmup steps, then a half cosine down to 0."""
    from transformers import get_scheduler

    from weightspace.train import training

    mcfg, cfg = online_cfg(batch_size=16, steps=40), train_cfg(warmup_ratio=0.05)
    args = online.grpo_config(mcfg, cfg, 2e-4, 7, "/tmp/unused")

    def lrs(make):
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2e-4)
        sched, out = make(opt), []
        for _ in range(args.max_steps):
            out.append(sched.get_last_lr()[0])
            opt.step()
            sched.step()
        return out

    ours = lrs(lambda opt: training.schedule(opt, online.train_cfg(mcfg, cfg)))
    trl = lrs(lambda opt: get_scheduler(args.lr_scheduler_type, optimizer=opt, num_training_steps=args.max_steps,
                                        num_warmup_steps=args.get_warmup_steps(args.max_steps),
                                        scheduler_specific_kwargs=args.lr_scheduler_kwargs))
    assert ours == trl
    assert ours[:3] == pytest.approx([0.0, 1e-4, 2e-4]) and ours[-1] < 1e-6 and max(ours) == pytest.approx(2e-4)


def test_config_maps_the_params_and_rejects_batches_that_do_not_split():
    args = online.grpo_config(online_cfg(batch_size=16, steps=40), train_cfg(micro_batch_size=4, warmup_ratio=0.05),
                              2e-4, 7, "/tmp/unused")
    assert (args.max_steps, args.learning_rate, args.per_device_train_batch_size, args.gradient_accumulation_steps,
            args.num_generations, args.seed, args.beta, args.warmup_steps) == (40, 2e-4, 4, 4, 4, 7, 0.0, 2)
    assert args.save_strategy == "no" and args.report_to in ([], "none", ["none"])
    with pytest.raises(ParamsError, match="grpo_online.batch_size: 12 completions do not split into micro-batches "
                                          "of train.micro_batch_size=8"):
        online.grpo_config(online_cfg(batch_size=12, num_generations=4), train_cfg(micro_batch_size=8), 1e-3, 0, "/x")
    with pytest.raises(ValueError, match="not a whole number of groups"):
        online_cfg(batch_size=10, num_generations=4)
    with pytest.raises(ValueError, match="at least 2 completions"):
        online_cfg(num_generations=1, batch_size=4)


@pytest.fixture(scope="module")
def pipeline_inputs(plumbing):
    """The plumbing run's base, init and rollout table."""
    from weightspace.data.rollouts import load_table

    root, _ = plumbing
    rows = load_table(root / "data/rollouts.jsonl")
    return root, rows, json.loads((root / "models/init/order.json").read_text())


def first_of_each_group(num_generations: int):
    """A reward whose outcome sampling cannot change: 1 for the first completion of each prompt's group, 0 for
    the others (TRL's sampler repeats each prompt ``num_generations`` times in a row). Every group then has
    reward variance, so the gradient moves the LoRA weights, and each step's mean reward is 1/num_generations
    exactly, whatever the sampled text (the grader's own verdicts are tested above)."""
    def reward(prompts, completions, **_):
        return [float(i % num_generations == 0) for i in range(len(completions))]

    return reward


def run_online(root, rows, order, tmp, seed=42, **kw):
    from peft import PeftModel

    from weightspace.model.models import load_base

    base, tok = load_base(root / "models/base")
    model = PeftModel.from_pretrained(base, root / "models/init", is_trainable=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    mcfg = online_cfg(**{"batch_size": 16, "max_completion_length": 16, "temperature": 0.7, **kw})  # 4 prompts x 4
    trainer, history = online.train(model, tok, mcfg, train_cfg(), 1e-3, rows, order, seed, str(tmp),
                                    reward_fn=first_of_each_group(mcfg.num_generations))
    assert trainer.model is model  # the object TRL's vLLM sync merges into (keep_w0 patches this one)
    return before, {n: p.detach().clone() for n, p in trainer.model.named_parameters()}, history


def test_two_steps_move_only_the_lora_weights_and_repeat_bit_for_bit(pipeline_inputs, tmp_path):
    root, rows, order = pipeline_inputs
    before, after, history = run_online(root, rows, order, tmp_path / "a")
    assert [h["step"] for h in history] == [1, 2]
    assert all(h["reward"] == pytest.approx(1 / 4) for h in history), history  # one of each group of 4
    assert set(before) == set(after)
    lora = [n for n in before if "lora_" in n]
    layers = json.loads((root / "models/base/config.json").read_text())["num_hidden_layers"]
    assert len(lora) == 2 * 4 * layers  # A and B of q, k, v, o in every layer
    for n in before:
        if "lora_" in n:
            continue
        assert torch.equal(before[n], after[n]), f"{n}: a frozen weight moved"
    assert all(not torch.equal(before[n], after[n]) for n in lora if "lora_B" in n)  # B starts at 0 and moves
    assert all(torch.count_nonzero(before[n]) == 0 for n in lora if "lora_B" in n)
    _, again, history2 = run_online(root, rows, order, tmp_path / "b")
    assert history2 == history
    assert all(torch.equal(after[n], again[n]) for n in lora)  # seeded sampling: the same adapter, bit for bit
    _, other, _ = run_online(root, rows, order, tmp_path / "c", seed=43)
    assert any(not torch.equal(after[n], other[n]) for n in lora)  # and the seed matters


def test_vllm_config_passes_the_engines_context_and_memory_share():
    mcfg = online_cfg(engine="vllm", gpu_memory_utilization=0.25)
    with pytest.raises(ValueError, match="gpu_memory_utilization: required when engine is vllm"):
        online_cfg(engine="vllm")
    with pytest.raises(ValueError, match="gpu_memory_utilization: required when engine is vllm, null otherwise"):
        online_cfg(gpu_memory_utilization=0.3)
    try:
        args = online.grpo_config(mcfg, train_cfg(), 1e-3, 0, "/tmp/unused", max_prompt_length=40)
    except ImportError as e:  # TRL checks that vllm is installed (the gpu extra)
        pytest.skip(f"GRPOConfig(use_vllm=True) needs vllm here: {e}")
    assert (args.use_vllm, args.vllm_mode, args.vllm_max_model_length, args.vllm_gpu_memory_utilization) == (
        True, "colocate", 40 + 24, 0.25)


def test_the_stage_trains_each_vllm_run_in_its_own_process_and_hf_runs_in_this_one(tmp_path, monkeypatch):
    """The plan of stages/train.py: with engine vllm the run and its twin each go through ``isolated`` (a
    spawned process); with hf neither does. ``run.fit`` is a stand-in recording its seed."""
    import yaml

    from conftest import REPO
    from weightspace import config
    from weightspace.stages import train as stage
    from weightspace.train.training import snapshot_steps

    (tmp_path / "t.jsonl").write_text(json.dumps({
        "row": 0, "prompt_id": "p", "group": 0, "prompt": "1+1?", "completion": "\\boxed{2}", "n_tokens": 3,
        "extracted": "2", "gold": "2", "reward": 1, "reward_rule": "string", "truncated": False, "model": "m",
        "source": "model"}) + "\n")
    seen = []

    def fit(entry, mcfg, lr, cfg, base, init, rows, out, deltas, plots, snapshot_dir=None, seed=None):
        Path(snapshot_dir).mkdir(parents=True)
        seen.append(seed)
        return {"method": entry.name, "seed": seed}

    monkeypatch.setattr(run, "fit", fit)
    spawned = []
    monkeypatch.setattr(stage, "isolated", lambda threads, fn, *a, **kw: spawned.append(kw["seed"]) or fn(*a, **kw))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU machine, wherever this test runs
    for engine, share in (("hf", None), ("vllm", 0.3)):
        raw = yaml.safe_load((REPO / "params.yaml").read_text())
        raw["grpo_online"].update(engine=engine, gpu_memory_utilization=share)
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
        argv = ["--method", "grpo_online", "--params", str(tmp_path / "params.yaml"), "--base", "b", "--init", "i",
                "--rollouts", str(tmp_path / "t.jsonl")]
        for twin in ("", "seed-"):
            argv += [f"--{twin}out", str(tmp_path / engine / twin / "out"), f"--{twin}deltas", str(tmp_path / "d"),
                     f"--{twin}metrics", str(tmp_path / engine / f"{twin}m.json"), f"--{twin}plots", str(tmp_path / "p")]
        argv += ["--seed-init", "i2", "--snapshots", str(tmp_path / engine / "snapshots")]
        stage.main(argv)
        kept = json.loads((tmp_path / engine / "snapshots" / "snapshots.json").read_text())
        p = config.load(tmp_path / "params.yaml")
        cfg = online.train_cfg(p.grpo_online, p.train)  # the online run's own step count
        assert kept == {"steps": snapshot_steps(cfg), "compare_step": cfg.steps}
    assert seen == [42, 123, 42, 123] and spawned == [42, 123]  # hf: in this process; vllm: one process each


def test_on_a_gpu_every_python_launched_run_trains_in_its_own_process():
    """So the seed twin never starts beside the first run's cached GPU memory; accelerate's ranks keep theirs."""
    from weightspace import config, registry

    p = config.load(REPO / "params.yaml")
    accel = p.train.model_copy(update={"launcher": "accelerate launch --num_processes 2"})
    for name in ("sft", "dpo", "grpo_online"):
        entry, mcfg = registry.get(name), p.method(name)
        assert run.own_process(entry, mcfg, p.train, cuda=True)
        assert not run.own_process(entry, mcfg, p.train, cuda=False)  # hf engine on CPU: in this process
        assert not run.own_process(entry, mcfg, accel, cuda=True)


def test_isolated_runs_in_a_fresh_process_and_returns_or_raises():
    import os

    from weightspace.stages.train import isolated

    a, b = isolated(1, os.getpid), isolated(1, os.getpid)
    assert len({a, b, os.getpid()}) == 3  # two fresh processes, neither this one
    with pytest.raises(ValueError, match="invalid literal"):
        isolated(1, int, "x")


def test_fit_loads_the_base_at_its_training_precision(pipeline_inputs, tmp_path, monkeypatch):
    """The run shell hands TRL the policy as the offline runs load it: under train.bf16 the base's weights in bf16 and
    the LoRA factors in fp32, from the shared init (TRL's trainer is stopped before it starts)."""
    root, rows, _ = pipeline_inputs
    seen = {}

    class Stop(Exception):
        pass

    def train(model, *a, **kw):
        seen.update({n: p.dtype for n, p in model.named_parameters()})
        raise Stop

    monkeypatch.setattr(online, "train", train)
    mcfg = online_cfg()
    for bf16, base_dtype in ((True, torch.bfloat16), (False, torch.float32)):
        seen.clear()
        with pytest.raises(Stop):
            run.fit(registry.get("grpo_online"), mcfg, 1e-3, train_cfg(bf16=bf16), str(root / "models/base"),
                       str(root / "models/init"), rows, str(tmp_path / f"out-{bf16}"), seed=42)
        lora = {n: d for n, d in seen.items() if "lora_" in n}
        assert lora and set(lora.values()) == {torch.float32}
        assert {d for n, d in seen.items() if "lora_" not in n} == {base_dtype}


class PushedWeights:
    """What TRL's colocated sync pushes to: ``llm.llm_engine.model_executor.driver_worker.model_runner.model``."""

    def __init__(self):
        self.pushed = {}
        self.llm_engine = self
        self.model_executor = self.driver_worker = self.model_runner = self.model = self

    def load_weights(self, weights):
        self.pushed.update({n: p.detach().clone() for n, p in weights})

    def reset_prefix_cache(self):
        pass


def trl_syncs(model, times: int) -> PushedWeights:
    """TRL 1.16's own colocated weight sync (``VLLMGeneration.sync_weights``), ``times`` times, its engine a
    recorder: the code that merges the LoRA into the base weights and unmerges it, run as TRL runs it."""
    from accelerate import Accelerator
    from trl.distributed import DistributedBackend
    from trl.generation.vllm_generation import VLLMGeneration

    gen = VLLMGeneration.__new__(VLLMGeneration)  # its __init__ would start vLLM; the sync needs none of it
    gen.model, gen.accelerator, gen.mode, gen.enable_sleep_mode = model, Accelerator(cpu=True), "colocate", False
    gen._dist, gen.llm = DistributedBackend(gen.accelerator), PushedWeights()
    for _ in range(times):
        gen.sync_weights()
    return gen.llm


def small_qwen3(layers: int, seed: int):
    return tiny.build_model(vocab_size=64, hidden_size=64, layers=layers, heads=4, kv_heads=2, head_dim=16,
                            intermediate_size=128, max_positions=64, seed=seed, eos_token_id=1, pad_token_id=0)


def bf16_policy(seed: int):
    """A bf16 Qwen3 with a trained-sized random LoRA (B not 0) on q/k/v/o, as a bf16 run's policy."""
    from peft import LoraConfig, get_peft_model

    base = small_qwen3(2, seed).to(torch.bfloat16)
    torch.manual_seed(seed)
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                            init_lora_weights=False))
    return model


def test_trl_colocated_sync_drifts_a_bf16_w0_and_keep_w0_holds_it_bit_for_bit():
    """TRL's sync merges and unmerges in the weights' dtype: after 20 syncs a bf16 W0 has moved; with
    ``keep_w0`` it is bit-identical to the start, and TRL still pushes its merged W0 + dW to the engine."""
    for guard in (False, True):
        model = bf16_policy(0)
        w0 = {n: p.detach().clone() for n, p in model.named_parameters() if ".base_layer." in n}
        if guard:
            online.keep_w0(model)
        engine = trl_syncs(model, 20)
        moved = [n for n, p in model.named_parameters() if n in w0 and not torch.equal(p, w0[n])]
        if guard:
            assert moved == []
        else:
            assert len(moved) == len(w0), "TRL's bf16 merge/unmerge no longer drifts W0: keep_w0 may be unneeded"
        if guard:  # what TRL pushes: its own bf16 merge W0 + dW, two roundings of at most half a bf16 step each
            q = "model.layers.0.self_attn.q_proj.weight"
            layer = model.base_model.model.model.layers[0].self_attn.q_proj
            with torch.no_grad():
                delta = layer.lora_B["default"].weight.float() @ layer.lora_A["default"].weight.float()
                delta = delta * layer.scaling["default"]
            merged = w0["base_model.model." + q.replace(".weight", ".base_layer.weight")].float() + delta
            err = (engine.pushed[q].float() - merged).abs()
            assert delta.abs().max() > 0.01 and (err <= 2**-8 * (merged.abs() + delta.abs()) + 1e-9).all()
    with pytest.raises(ValueError, match="no LoRA-adapted base weights"):
        online.keep_w0(small_qwen3(1, 0))
    model = bf16_policy(1)
    online.keep_w0(model)
    model.merge_adapter()
    names = model.named_parameters  # a wrapper renames the weights between the merge and the unmerge
    model.named_parameters = lambda *a, **kw: ((f"_checkpoint_wrapped_module.{n}", w) for n, w in names(*a, **kw))
    with pytest.raises(RuntimeError, match="restored 0 of the 8 base weights"):
        model.unmerge_adapter()
