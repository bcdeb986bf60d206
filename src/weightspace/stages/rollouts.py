"""Stage rollouts: K sampled completions per training prompt, graded -> the shared rollout table.

Teacher: the base model (tiny default), ``rollouts.teacher`` (a hub id, hf/vllm engines) or the
``openai`` engine's model. Params: ``rollouts``, ``prompt``, ``threads``."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from .. import config
from ..datasets import read_jsonl, write_jsonl
from ..rollouts import grade_rows, summarize
from .common import parse, set_threads, write_json

log = logging.getLogger(__name__)


def make_engine(gen: config.Generation, base: str | Path, teacher: str | None = None, lora: str | None = None):
    """The generation engine of ``gen.engine`` on ``teacher`` (a hub id) or the base in ``base``."""
    from ..generation import HFEngine, OpenAIEngine, VLLMEngine
    from ..models import base_ref, default_device, load_base

    if gen.engine == "openai":
        return OpenAIEngine(gen)
    if gen.engine == "vllm":
        name, revision = (teacher, None) if teacher else base_ref(base)
        return VLLMEngine(name, gen, revision=revision, lora_path=lora)
    device, dtype = default_device()
    if teacher:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(teacher, dtype=dtype, trust_remote_code=False).to(device).eval()
        tok = AutoTokenizer.from_pretrained(teacher, trust_remote_code=False, padding_side="left")
    else:
        model, tok = load_base(base, dtype=dtype, device=device)
    if lora:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, lora).merge_and_unload().eval()
    return HFEngine(model, tok, gen)


def main(argv=None) -> None:
    args, params = parse(__doc__, {"data": "prepare's output folder", "base": "base model folder",
                                   "out": "rollout table (JSONL)", "metrics": "metrics JSON"}, argv)
    cfg = params.rollouts
    set_threads(params.threads)
    prompts = read_jsonl(Path(args.data) / "train.jsonl")
    messages = [params.prompt.render(p["question"]) for p in prompts]
    t0 = time.time()
    engine = make_engine(cfg.generation, args.base, cfg.teacher)
    completions = engine.generate(messages, cfg.k, desc="rollouts")
    rows = grade_rows(prompts, messages, completions)
    write_jsonl(args.out, rows)
    metrics = {**summarize(rows), "k": cfg.k, "wall_s": round(time.time() - t0, 1)}
    write_json(args.metrics, metrics)
    log.info("rollouts: %s", metrics)


if __name__ == "__main__":
    main()
