"""vLLM against transformers on one base and its adapters: the same greedy tokens, the same log-probs.

    .venv-vllm/bin/python tools/vllm_agree.py --base models/base --adapters models/sft,models/dpo \\
        --data data/prepared/eval/heldout.jsonl --n 32 --out /tmp/agree.json

Needs vLLM (`make vllm-setup`: the CPU build in `.venv-vllm`; on a GPU the `gpu` extra). Both engines are the
project's own (``generation.make_engine``): ``HFEngine`` merges each adapter exactly into the base,
``VLLMEngine`` serves it as a ``LoRARequest``; both in the dtype ``models.default_device`` picks (float32 on CPU).

For the base and each adapter it records, over the first ``--n`` prompts of ``--data`` rendered by the params'
prompt template and each model's chat template:
- greedy decoding (``--max-new-tokens``): how many items give the same token ids; for each item that differs,
  the first differing position and the transformers logit gap between its two best tokens there (a gap near 0
  is a tie that float rounding may break either way);
- sampling at temperature 1 through vLLM with its log-probs of the sampled tokens, against transformers'
  log-softmax of the same sequences (teacher-forced): the largest absolute difference, over every sampled token.

And three planted faults, each of which the comparison (greedy tokens and log-probs) must catch:
``alpha_x2`` (the first adapter's copy with ``lora_alpha`` doubled, so its scale alpha/r is twice the trained
one), ``not_applied`` (vLLM's base where transformers runs the first adapter) and ``template`` (vLLM renders
with the chat template minus the newline that opens the assistant turn). One JSON file comes out.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def compare(hf, vl, gaps) -> dict:
    """Greedy agreement of two lists of Completions (``token_ids``); ``gaps(i, prefix)``: the logit gap."""
    diffs = []
    for i, (a, b) in enumerate(zip(hf, vl)):
        if a.token_ids != b.token_ids:
            at = next((j for j, (x, y) in enumerate(zip(a.token_ids, b.token_ids)) if x != y),
                      min(len(a.token_ids), len(b.token_ids)))
            diffs.append({"item": i, "position": at, "logit_gap": gaps(i, a.token_ids[:at])})
    return {"items": len(hf), "tokens_equal": len(hf) - len(diffs), "differ": diffs}


def crowd(vl, gen, messages: list[str], ids: list[str], copies: int = 24, n: int = 4) -> dict:
    """Many seeded prompts in one call: ``copies`` x the prompts (each copy its own ids), ``n`` samples each at
    temperature 1, enough prompt tokens that vLLM would split a prefill over steps (on CPU a split prefill of a
    seeded request killed its engine). Then the first prompt alone: the same samples as in the crowd, as each
    prompt is sampled from its own seed."""
    sampled = gen.model_copy(update={"temperature": 1.0})
    vl.gen, kept = sampled, vl.gen
    try:
        many = vl.generate(messages * copies, n, ids=[f"{i}#{c}" for c in range(copies) for i in ids])
        alone = vl.generate(messages[:1], n, ids=[f"{ids[0]}#0"])
    finally:
        vl.gen = kept
    return {"prompts": len(messages) * copies, "samples": n,
            "tokens": sum(c.n_tokens for o in many for c in o),
            "first_prompt_same_alone": [c.token_ids for c in many[0]] == [c.token_ids for c in alone[0]]}


def _deterministic(worker) -> bool:
    """Run in vLLM's worker process (``LLM.collective_rpc``): whether deterministic mode is on there."""
    import torch

    return torch.are_deterministic_algorithms_enabled()


def refusals(vl, base: str, scratch: Path, messages: list[str], max_new_tokens: int) -> dict:
    """Two adapters vLLM cannot serve on this engine (a rank above its ``max_lora_rank``; a LoRA on
    ``embed_tokens``), each sent straight to vLLM (where it fails, and how) and to the project's check
    (``check_vllm_adapter``, before any engine)."""
    from peft import LoraConfig, get_peft_model
    from vllm import SamplingParams
    from vllm.lora.request import LoRARequest

    from weightspace.generate.generation import chat, check_vllm_adapter
    from weightspace.model.models import load_base

    out = {}
    # embed_tokens first: a rank above max_lora_rank kills vLLM's engine process (EngineDeadError), and with it
    # every later request of the run
    for i, (name, r, targets) in enumerate([("embed_tokens", 8, ["q_proj", "embed_tokens"]),
                                             ("rank_above_max", 2 * vl.max_lora_rank, ["q_proj"])]):
        model, _ = load_base(base)
        folder = scratch / name
        get_peft_model(model, LoraConfig(r=r, lora_alpha=r, target_modules=targets)).save_pretrained(folder)
        rec = {"rank": r, "target_modules": targets}
        try:
            check_vllm_adapter(folder, vl.max_lora_rank)
            rec["ours"] = None
        except ValueError as e:
            rec["ours"] = str(e)
        try:
            vl.llm.chat([chat(m) for m in messages], SamplingParams(temperature=0.0, max_tokens=max_new_tokens),
                        use_tqdm=False, lora_request=LoRARequest(name, 100 + i, str(folder)))
            rec["vllm"] = None
        except Exception as e:  # noqa: BLE001 (recorded: what vLLM raises is the finding)
            rec["vllm"] = f"{type(e).__name__}: {str(e)[:400]}"
        out[name] = rec
        print(f"refusal {name}: ours {rec['ours']!r}; vLLM {rec['vllm']!r}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="base stage folder (or an HF model folder)")
    ap.add_argument("--adapters", default="", help="PEFT adapter folders, comma-separated")
    ap.add_argument("--data", required=True, help="JSONL of {id, question}")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--max-model-len", type=int, default=256)
    ap.add_argument("--no-plant", action="store_true", help="skip the planted faults")
    ap.add_argument("--crowd", action="store_true",
                    help="also 24 x the prompts, 4 samples each, in one call (minutes on a 135M model on CPU)")
    ap.add_argument("--refusals", action="store_true",
                    help="last, send vLLM an adapter of a rank above its max_lora_rank and one on embed_tokens")
    ap.add_argument("--worker-state", action="store_true",
                    help="record whether deterministic mode reached vLLM's worker (needs "
                         "VLLM_ALLOW_INSECURE_SERIALIZATION=1: the probe is a function sent to the worker)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import torch

    from weightspace import config
    from weightspace.data.datasets import read_jsonl
    from weightspace.generate.generation import chat, make_engine, prompt_seed
    from weightspace.model.sequences import prompt_ids

    params = config.load(args.params)
    from weightspace.stages.common import set_threads

    set_threads(params.threads)  # as every stage: the threads, and deterministic mode on in this process
    rows = read_jsonl(args.data)[: args.n]
    messages = [params.prompt.render(r["question"]) for r in rows]
    ids = [r["id"] for r in rows]
    adapters = [a for a in args.adapters.split(",") if a]
    base = dict(params.evaluate.generation.model_dump(), temperature=0.0, top_p=1.0, openai=None,
                max_new_tokens=args.max_new_tokens, batch_size=16)
    gen_hf = config.Generation(**{**base, "engine": "hf", "max_model_len": None, "gpu_memory_utilization": None})
    gen_vl = config.Generation(**{**base, "engine": "vllm", "max_model_len": args.max_model_len,
                                  "gpu_memory_utilization": 0.5})
    scratch = Path(tempfile.mkdtemp(prefix="vllm_agree_"))
    plants = {}
    if adapters and not args.no_plant:
        doubled = scratch / "alpha_x2"
        shutil.copytree(adapters[0], doubled)
        cfg = json.loads((doubled / "adapter_config.json").read_text())
        cfg["lora_alpha"] *= 2
        (doubled / "adapter_config.json").write_text(json.dumps(cfg))
        plants["alpha_x2"] = str(doubled)

    t0 = time.perf_counter()
    hf = make_engine(gen_hf, args.base, adapters)
    t_hf_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    vl = make_engine(gen_vl, args.base, adapters + list(plants.values()))
    t_vl_load = time.perf_counter() - t0
    tok = hf.tok
    prompts = [prompt_ids(tok, m) for m in messages]

    @torch.no_grad()
    def logits(adapter, seq):
        hf.use(adapter)
        return hf.model(torch.tensor([seq], device=hf.model.device)).logits[0].float()

    def gap_of(adapter):
        def gap(i, prefix):
            top = logits(adapter, prompts[i] + list(prefix))[-1].topk(2).values
            return float(top[0] - top[1])
        return gap

    report = {"base": args.base, "n": len(rows), "max_new_tokens": args.max_new_tokens,
              "dtype": {"transformers": str(hf.model.dtype).removeprefix("torch."),
                        "vllm": str(vl.llm.llm_engine.model_config.dtype).removeprefix("torch.")},
              "models": {}, "planted": {}, "seconds": {}}
    report["seconds"].update(hf_load=round(t_hf_load, 2), vllm_load=round(t_vl_load, 2))
    if args.worker_state:
        report["deterministic"] = {"here": torch.are_deterministic_algorithms_enabled(),
                                   "vllm_worker": vl.llm.collective_rpc(_deterministic)[0]}
    greedy_hf, t_hf, t_vl = {}, 0.0, 0.0
    from vllm import SamplingParams

    # the chat-template variables the engine passes (base.hub.thinking), passed on every direct call too
    fixed = {"chat_template_kwargs": vl.template_vars} if vl.template_vars else {}

    from weightspace.data.rollouts import Completion

    def vllm_greedy(adapter, template=None):
        if template is None:  # the engine's own path
            return [c[0] for c in vl.generate(messages, 1, adapter=adapter)]
        outs = vl.llm.chat([chat(m) for m in messages], SamplingParams(temperature=0.0, max_tokens=args.max_new_tokens),
                           use_tqdm=False, chat_template=template, lora_request=vl.lora_request(adapter), **fixed)
        return [Completion(o.outputs[0].text, len(o.outputs[0].token_ids), False, tuple(o.outputs[0].token_ids))
                for o in outs]

    def sampled(hf_adapter, vl_adapter, template=None) -> dict:
        """vLLM's log-probs of the tokens it sampled (temperature 1, each prompt its own seed) against transformers'
        log-softmax of the same sequences under ``hf_adapter``, the prompt as transformers renders it."""
        sp = [SamplingParams(n=1, temperature=1.0, top_p=1.0, max_tokens=args.max_new_tokens, logprobs=0,
                             seed=prompt_seed(gen_vl.seed, i)) for i in ids]
        outs = vl.llm.chat([chat(m) for m in messages], sp, use_tqdm=False, lora_request=vl.lora_request(vl_adapter),
                           **({"chat_template": template} if template is not None else {}), **fixed)
        worst, count = 0.0, 0
        for p, o in zip(prompts, outs):
            o = o.outputs[0]
            got = torch.tensor([lp[t].logprob for t, lp in zip(o.token_ids, o.logprobs)])
            lg = logits(hf_adapter, p + list(o.token_ids)).log_softmax(-1)[len(p) - 1 : -1]
            want = lg.gather(1, torch.tensor(o.token_ids, device=lg.device)[:, None])[:, 0].cpu()
            worst, count = max(worst, float((got - want).abs().max())), count + len(o.token_ids)
        return {"sampled_tokens": count, "max_abs_logprob_diff": worst}

    def show(name, rec):
        print(f"{name}: greedy tokens equal on {rec['tokens_equal']}/{rec['items']}; largest log-prob difference "
              f"{rec['max_abs_logprob_diff']:.2e} over {rec['sampled_tokens']} sampled tokens", flush=True)

    for adapter in [None, *adapters]:
        name = "base" if adapter is None else Path(adapter).name
        t0 = time.perf_counter()
        a = [c[0] for c in hf.generate(messages, 1, adapter=adapter)]
        t_hf += time.perf_counter() - t0
        t0 = time.perf_counter()
        b = vllm_greedy(adapter)
        t_vl += time.perf_counter() - t0
        greedy_hf[adapter] = a
        report["models"][name] = {**compare(a, b, gap_of(adapter)), **sampled(adapter, adapter)}
        show(name, report["models"][name])
    report["seconds"].update(hf_greedy=round(t_hf, 2), vllm_greedy=round(t_vl, 2))

    if adapters and not args.no_plant:
        first = adapters[0]
        marker = "<|im_start|>assistant\n"
        template = tok.chat_template
        if marker in template:
            bad = template.replace(marker, "<|im_start|>assistant")
        else:  # another family's template: drop its last newline, one token of the rendered prompt
            cut = template.rfind("\\n")
            bad = template[:cut] + template[cut + 2 :]
        # fault -> (what vLLM serves, the template it renders with); transformers runs the first adapter
        for fault, (served, tmpl) in {"alpha_x2": (plants["alpha_x2"], None), "not_applied": (None, None),
                                      "template": (first, bad)}.items():
            rec = {**compare(greedy_hf[first], vllm_greedy(served, tmpl), gap_of(first)),
                   **sampled(first, served, tmpl)}
            report["planted"][fault] = rec
            show(f"planted {fault}", rec)
    if args.crowd:
        report["crowd"] = crowd(vl, gen_vl, messages, ids)
        print(f"crowd: {report['crowd']}", flush=True)
    if args.refusals:
        report["refusals"] = refusals(vl, args.base, scratch, messages[:2], args.max_new_tokens)
    shutil.rmtree(scratch, ignore_errors=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":  # vLLM spawns its engine process: nothing may run at import
    main()
