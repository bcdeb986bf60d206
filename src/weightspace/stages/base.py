"""Stage base: the student / base model -> ``<out>/`` (HF safetensors folder, or ``hub.json``).

tiny: train a byte-level BPE tokenizer on the pretraining corpus, build a small Qwen3, pretrain it on
the worked solutions for exactly ``steps`` steps (greedy accuracy on held-out rollout prompts every
``eval_every``, for the curve); fail if it ends outside [min_acc, max_acc].
hub: record the model id and the revision resolved to a commit; nothing is trained. When
``base.hub.model_id`` is an existing local folder (the local-path route, e.g. a converted GGUF:
``tools/convert_gguf.py``), record its path and its content hash ``sha256:<hex>`` instead, with no
network; ``base.hub.revision`` is then ``local`` (whatever the folder holds) or that hash (a pin).
Params: ``base``, ``prompt``, ``threads``, ``rollouts.generation.max_new_tokens``."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from .. import config, grading, tiny
from ..datasets import read_jsonl
from ..generation import HFEngine
from ..models import HUB_FILE, folder_sha256
from .common import parse, set_threads, write_json

log = logging.getLogger(__name__)


def greedy_accuracy(engine: HFEngine, prompt: config.Prompt, rows: list[dict]) -> float:
    outs = engine.generate([prompt.render(r["question"]) for r in rows], n=1, desc="eval")
    return sum(grading.is_correct(o[0].text, r["answer"]) for o, r in zip(outs, rows)) / len(rows)


def greedy_engine(model, tok, max_new_tokens: int, n: int, seed: int) -> HFEngine:
    """The hf engine decoding greedily, all ``n`` held-out prompts in one batch."""
    gen = config.Generation(engine="hf", temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens,
                            batch_size=n, seed=seed, openai=None)
    return HFEngine(model, tok, gen)


def build_tiny(cfg: config.TinyModel, prompt: config.Prompt, max_new_tokens: int, data: Path, out: Path) -> dict:
    corpus = read_jsonl(data / "pretrain.jsonl")
    heldout = read_jsonl(data / "train.jsonl")[: cfg.eval_n]
    t0 = time.time()
    tok = tiny.train_tokenizer([prompt.render(r["question"]) + " " + r["solution"] for r in corpus], cfg.vocab_size)
    model = tiny.build_model(len(tok), cfg.hidden_size, cfg.layers, cfg.heads, cfg.kv_heads, cfg.head_dim,
                             cfg.intermediate_size, cfg.max_positions, cfg.seed, tok.eos_token_id, tok.pad_token_id)
    examples = tiny.encode_examples(tok, [prompt.render(r["question"]) for r in corpus], [r["solution"] for r in corpus])
    engine = greedy_engine(model, tok, max_new_tokens, len(heldout), cfg.seed)
    curve = tiny.pretrain(model, examples, cfg.steps, cfg.batch_size, cfg.lr, cfg.seed, tok.pad_token_id,
                          evaluate=lambda: greedy_accuracy(engine, prompt, heldout), eval_every=cfg.eval_every)
    acc = curve[-1]["acc"] if curve and curve[-1]["step"] == cfg.steps else greedy_accuracy(engine, prompt, heldout)
    if not cfg.min_acc <= acc <= cfg.max_acc:
        raise RuntimeError(f"base: held-out greedy accuracy {acc:.3f} outside [base.tiny.min_acc, max_acc] = "
                           f"[{cfg.min_acc}, {cfg.max_acc}]; change base.tiny.steps / lr")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return {"kind": "tiny", "params": sum(p.numel() for p in model.parameters()), "vocab_size": len(tok),
            "layers": cfg.layers, "heldout_acc": acc, "heldout_n": len(heldout), "steps": cfg.steps, "curve": curve,
            "wall_s": round(time.time() - t0, 1)}


LOCAL_REVISION = "local"  # base.hub.revision of a local folder: record whatever it holds


def record_hub(cfg: config.HubModel, out: Path, key: str = "base.hub") -> dict:
    """``<out>/hub.json``: the model id and the revision resolved to a commit, or for a local folder its
    path and content hash (``key``: the params key named in errors)."""
    if Path(cfg.model_id).is_dir():  # the local-path route: no hub, the content hash is the revision
        ref, route = {"model_id": cfg.model_id, "revision": folder_sha256(cfg.model_id)}, "local"
        if cfg.revision not in (LOCAL_REVISION, ref["revision"]):
            raise config.ParamsError(f"{key}.revision: {cfg.revision!r} is neither {LOCAL_REVISION!r} nor the "
                                     f"content hash of local folder {cfg.model_id} ({ref['revision']})")
    else:
        from huggingface_hub import HfApi

        sha = HfApi().model_info(cfg.model_id, revision=cfg.revision).sha
        ref, route = {"model_id": cfg.model_id, "revision": sha}, "hub"
    out.mkdir(parents=True)
    (out / HUB_FILE).write_text(json.dumps(ref, indent=2) + "\n")
    return {"kind": "hub", "route": route, **ref}


def main(argv=None) -> None:
    args, params = parse(__doc__, {"data": "prepare's output folder", "out": "model folder",
                                   "metrics": "metrics JSON"}, argv)
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    if params.base.kind == "tiny":
        set_threads(params.threads)
        metrics = build_tiny(params.base.tiny, params.prompt, params.rollouts.generation.max_new_tokens,
                             Path(args.data), out)
    else:
        metrics = record_hub(params.base.hub, out)
    write_json(args.metrics, metrics)
    log.info("base: %s", {k: v for k, v in metrics.items() if k != "curve"})


if __name__ == "__main__":
    main()
