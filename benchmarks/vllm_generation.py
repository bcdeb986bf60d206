"""vLLM's engine against transformers': generation speed of the project's two local engines on one model, same run.

    .venv-vllm/bin/python benchmarks/vllm_generation.py --base models/base [--adapter models/sft]

Both engines as the stages build them (``generation.make_engine``: ``HFEngine`` batched with left padding and a
KV cache, the adapter merged exactly; ``VLLMEngine`` with the adapter as a ``LoRARequest``), float32 on CPU, on the
same ``--prompts`` prompts of ``--data``: a warm-up call each, then ``--repeat`` timed calls of greedy decoding
(``--max-new-tokens``) and of ``--k`` samples per prompt at temperature 1. Prints generated tokens per second of
each and the ratio vLLM / transformers, plus each engine's start-up time. Needs vLLM (``make vllm-setup``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def timed(engine, messages, n, adapter, repeat):
    """(generated tokens per second, tokens per call) over ``repeat`` calls after one warm-up call."""
    engine.generate(messages, n, adapter=adapter)
    tokens, t = 0, time.perf_counter()
    for _ in range(repeat):
        out = engine.generate(messages, n, adapter=adapter)
        tokens += sum(c.n_tokens for o in out for c in o)
    return tokens / (time.perf_counter() - t), tokens // repeat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="models/base")
    ap.add_argument("--adapter", default=None)
    ap.add_argument("--data", default="data/prepared/eval/heldout.jsonl")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--max-model-len", type=int, default=256)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from weightspace import config
    from weightspace.generate.generation import make_engine
    from weightspace.stages.common import set_threads

    params = config.load(args.params)
    set_threads(params.threads)
    rows = [json.loads(x) for x in Path(args.data).read_text().splitlines()][: args.prompts]
    messages = [params.prompt.render(r["question"]) for r in rows]
    adapters = [args.adapter] if args.adapter else []
    common = dict(params.evaluate.generation.model_dump(), top_p=1.0, max_new_tokens=args.max_new_tokens,
                  batch_size=len(messages), openai=None)
    engines = {}
    for name, extra in (("transformers", dict(engine="hf", max_model_len=None, gpu_memory_utilization=None)),
                        ("vllm", dict(engine="vllm", max_model_len=args.max_model_len, gpu_memory_utilization=0.5))):
        t = time.perf_counter()
        gen = config.Generation(**{**common, **extra, "temperature": 0.0})
        engines[name] = (make_engine(gen, args.base, adapters), gen, time.perf_counter() - t)
    print(f"{args.base} + {args.adapter or 'no adapter'}: {len(messages)} prompts, {args.max_new_tokens} new tokens")
    for name, (_, _, start) in engines.items():
        print(f"  {name:12s} start {start:6.1f} s")
    for mode, n, temperature in (("greedy", 1, 0.0), (f"{args.k} samples", args.k, 1.0)):
        rates = {}
        for name, (engine, gen, _) in engines.items():
            engine.gen = gen.model_copy(update={"temperature": temperature})
            rates[name], per_call = timed(engine, messages, n, args.adapter, args.repeat)
            print(f"  {mode:10s} {name:12s} {rates[name]:9.0f} tokens/s ({per_call} tokens per call)")
        print(f"  {mode:10s} vllm / transformers: {rates['vllm'] / rates['transformers']:.2f}x")


if __name__ == "__main__":  # vLLM spawns its engine process: nothing may run at import
    main()
