"""Stage teacher: the model that writes the rollout table -> ``<out>/`` (``rollouts.teacher``).

The paper's rollouts come from a teacher much stronger than the student (DeepSeek-V4-Flash), so most
of them are right. kind ``tiny`` (the default): the student base pretrained ``rollouts.teacher.tiny.steps``
more steps on the same problems, their worked solutions written in the teacher's own ``style`` (as
DeepSeek writes unlike Qwen; same tokenizer, same architecture); its greedy accuracy on
the base's held-out prompts goes to ``<metrics>`` beside the base's. ``student``: a copy of the base
(the student samples its own table). ``hub``: ``hub.json`` as the base stage writes it (a hub id, or a
local folder with its content hash). ``api``: ``api.json`` naming the openai engine's endpoint and model.
Params: ``rollouts.teacher``, ``rollouts.generation.openai``, ``base``, ``prompt``, ``threads``,
``rollouts.generation.max_new_tokens``."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from .common import parse, set_threads, write_json

log = logging.getLogger(__name__)


def main(argv=None) -> None:
    args, params = parse(__doc__, {"data": "prepare's output folder", "base": "base stage folder",
                                   "out": "teacher folder", "metrics": "metrics JSON"}, argv)
    cfg, out = params.rollouts.teacher, Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    if cfg.kind == "tiny":
        from ..tiny.pretrain import build_tiny_teacher

        set_threads(params.threads)
        metrics = build_tiny_teacher(cfg.tiny, params.base.tiny, params.prompt,
                                     params.rollouts.generation.max_new_tokens, Path(args.data), Path(args.base), out)
    elif cfg.kind == "student":
        shutil.copytree(args.base, out)
        metrics = {"kind": "student"}
    elif cfg.kind == "hub":
        from ..model.models import record_hub

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
