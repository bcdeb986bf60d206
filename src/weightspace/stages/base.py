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

import logging
import shutil
from pathlib import Path

from ..model.models import record_hub
from .common import parse, set_threads, write_json

log = logging.getLogger(__name__)


def main(argv=None) -> None:
    args, params = parse(__doc__, {"data": "prepare's output folder", "out": "model folder",
                                   "metrics": "metrics JSON"}, argv)
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    if params.base.kind == "tiny":
        set_threads(params.threads)
        from ..tiny.pretrain import build_tiny

        metrics = build_tiny(params.base.tiny, params.prompt, params.rollouts.generation.max_new_tokens,
                             Path(args.data), out)
    else:
        metrics = record_hub(params.base.hub, out)
    write_json(args.metrics, metrics)
    log.info("base: %s", {k: v for k, v in metrics.items() if k != "curve"})


if __name__ == "__main__":
    main()
