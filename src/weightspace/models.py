"""Loading the base model: a local HF folder (tiny default) or a hub reference (paper profile).

``models/base`` holds either a full HF safetensors folder, or ``hub.json`` =
``{"model_id", "revision"}`` with the revision resolved to a commit when the stage ran, so every later
stage loads exactly the same weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

HUB_FILE = "hub.json"


def base_ref(path: str | Path) -> tuple[str, str | None]:
    """(name_or_path, revision) to pass to ``from_pretrained`` for the base in ``path``."""
    path = Path(path)
    hub = path / HUB_FILE
    if hub.is_file():
        ref = json.loads(hub.read_text())
        return ref["model_id"], ref["revision"]
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: neither an HF model folder nor a {HUB_FILE}; run the base stage")
    return str(path), None


def load_tokenizer(path: str | Path):
    name, revision = base_ref(path)
    tok = AutoTokenizer.from_pretrained(name, revision=revision, trust_remote_code=False)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def default_device() -> tuple[str, torch.dtype]:
    """("cuda", bfloat16) on a GPU machine, ("cpu", float32) elsewhere: inference stages use this."""
    return ("cuda", torch.bfloat16) if torch.cuda.is_available() else ("cpu", torch.float32)


def load_base(path: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    """(model, tokenizer) of the base in ``path``, in eval mode."""
    name, revision = base_ref(path)
    model = AutoModelForCausalLM.from_pretrained(name, revision=revision, dtype=dtype, trust_remote_code=False)
    return model.to(device).eval(), load_tokenizer(path)
