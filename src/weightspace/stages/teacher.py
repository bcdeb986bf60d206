"""Stage teacher: the model that writes the rollout table -> ``<out>/`` (``rollouts.teacher``).

The paper's rollouts come from a teacher much stronger than the student (DeepSeek-V4-Flash), so most
of them are right. kind ``tiny`` (the default): the student base pretrained ``rollouts.teacher.tiny.steps``
more steps on the same problems, their worked solutions written in the teacher's own ``style`` (as
DeepSeek writes unlike Qwen; same tokenizer, same architecture); its greedy accuracy on
the base's held-out prompts goes to ``<metrics>`` beside the base's. ``student``: a copy of the base
(the student samples its own table). ``hub``: ``hub.json`` as the base stage writes it (a hub id, or a
local folder with its content hash). ``api``: ``api.json`` naming the openai engine's endpoint and model.
Params: ``rollouts.teacher``, ``base``, ``prompt``, ``threads``, ``rollouts.generation.max_new_tokens``."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from .. import config
from .common import parse, set_threads, write_json

log = logging.getLogger(__name__)


def build_tiny_teacher(cfg: config.TinyTeacher, base_cfg: config.TinyModel, prompt: config.Prompt,
                       max_new_tokens: int, data: Path, base: Path, out: Path) -> dict:
    """The base pretrained ``cfg.steps`` more steps (its own warmup + cosine schedule and batch draws)."""
    from .. import problems, tiny
    from ..datasets import read_jsonl
    from ..models import load_base
    from .base import greedy_accuracy, greedy_engine

    t0 = time.time()
    model, tok = load_base(base)
    corpus = read_jsonl(data / "pretrain.jsonl")
    heldout = read_jsonl(data / "train.jsonl")[: base_cfg.eval_n]  # the base's held-out prompts
    engine = greedy_engine(model, tok, max_new_tokens, len(heldout), cfg.seed)
    examples = tiny.encode_examples(tok, [prompt.render(r["question"]) for r in corpus],
                                    [problems.restyle(r["solution"], cfg.style) for r in corpus])
    curve = [{"step": 0, "loss": None, "acc": greedy_accuracy(engine, prompt, heldout)}]
    if cfg.steps:
        curve += tiny.pretrain(model, examples, cfg.steps, cfg.batch_size, cfg.lr, cfg.seed, tok.pad_token_id,
                               evaluate=lambda: greedy_accuracy(engine, prompt, heldout), eval_every=cfg.eval_every)
        if curve[-1]["step"] != cfg.steps:
            curve.append({"step": cfg.steps, "loss": None, "acc": greedy_accuracy(engine, prompt, heldout)})
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return {"kind": "tiny", "steps": cfg.steps, "heldout_acc": curve[-1]["acc"], "base_heldout_acc": curve[0]["acc"],
            "heldout_n": len(heldout), "curve": curve, "wall_s": round(time.time() - t0, 1)}


def main(argv=None) -> None:
    args, params = parse(__doc__, {"data": "prepare's output folder", "base": "base stage folder",
                                   "out": "teacher folder", "metrics": "metrics JSON"}, argv)
    cfg, out = params.rollouts.teacher, Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    if cfg.kind == "tiny":
        set_threads(params.threads)
        metrics = build_tiny_teacher(cfg.tiny, params.base.tiny, params.prompt,
                                     params.rollouts.generation.max_new_tokens, Path(args.data), Path(args.base), out)
    elif cfg.kind == "student":
        shutil.copytree(args.base, out)
        metrics = {"kind": "student"}
    elif cfg.kind == "hub":
        from .base import record_hub

        metrics = record_hub(cfg.hub, out, key="rollouts.teacher.hub")
    else:
        o = params.rollouts.generation.openai
        out.mkdir(parents=True)
        ref = {"base_url": o.base_url, "model": o.model}
        (out / "api.json").write_text(json.dumps(ref, indent=2) + "\n")
        metrics = {"kind": "api", **ref}
    write_json(args.metrics, metrics)
    log.info("teacher: %s", {k: v for k, v in metrics.items() if k != "curve"})


if __name__ == "__main__":
    main()
