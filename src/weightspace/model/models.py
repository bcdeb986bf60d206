"""Loading the base model: a local HF folder (tiny default) or a hub reference (paper profile).

``models/base`` holds either a full HF safetensors folder, or ``hub.json`` =
``{"model_id", "revision"}`` with the revision resolved to a commit when the stage ran, so every later
stage loads exactly the same weights. The local-path route for hub models (``base.hub.model_id`` an
existing folder, e.g. the smollm2 profile's converted GGUF): ``model_id`` is that path and the
revision is ``sha256:<hex>``, the folder's content hash (``folder_sha256``); every later stage checks
the folder against it before loading, so a changed folder fails loudly instead of loading other weights.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import torch

from ..core.schema import ParamsError

HUB_FILE = "hub.json"
LOCAL_PREFIX = "sha256:"  # revision of a local folder; a hub revision is a 40-hex commit sha


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def folder_sha256(folder: str | Path) -> str:
    """``sha256:<hex>`` over every file under ``folder``: its relative path and bytes, in path order."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if not files:
        raise FileNotFoundError(f"{folder}: no files in the local base folder")
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.relative_to(folder).as_posix()}={file_sha256(p)}\n".encode())
    return LOCAL_PREFIX + h.hexdigest()


@functools.cache
def _check_local(folder: str, revision: str, hub: str) -> None:
    """The local folder still holds what the base stage recorded (hashed once per process)."""
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"{folder}: local base folder recorded in {hub} is missing")
    got = folder_sha256(folder)
    if got != revision:
        raise RuntimeError(f"{folder}: content {got} differs from {revision} recorded in {hub}; restore the "
                           "folder or re-run the base stage (dvc repro -f base) and everything after it")


def base_ref(path: str | Path) -> tuple[str, str | None]:
    """(name_or_path, revision) to pass to ``from_pretrained`` for the base in ``path``; a local folder
    recorded by the base stage gives (folder, None) after its content hash is checked."""
    path = Path(path)
    hub = path / HUB_FILE
    if hub.is_file():
        ref = json.loads(hub.read_text())
        if ref["revision"].startswith(LOCAL_PREFIX):
            _check_local(ref["model_id"], ref["revision"], str(hub))
            return ref["model_id"], None
        return ref["model_id"], ref["revision"]
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: neither an HF model folder nor a {HUB_FILE}; run the base stage")
    return str(path), None


def fix_template_vars(template: str, variables: dict) -> str:
    """``template`` with ``variables`` set at its top, so they hold whatever a caller passes: Jinja's
    top-level ``{% set %}`` shadows the render context (``{"enable_thinking": False}`` turns a Qwen3
    template's thinking off for every renderer: our sequences, TRL, vLLM)."""
    sets = "".join(f"{{%- set {k} = {json.dumps(v)} -%}}" for k, v in variables.items())
    return sets + template


def template_vars(path: str | Path) -> dict | None:
    """The chat-template variables the base stage recorded in ``<path>/hub.json`` (``<model>.hub.thinking``)."""
    hub = Path(path) / HUB_FILE
    return json.loads(hub.read_text()).get("chat_template_vars") if hub.is_file() else None


def load_tokenizer(path: str | Path):
    """The base's tokenizer, left-padded, its chat template with the variables the base stage recorded
    (``base.hub.thinking``) fixed."""
    from transformers import AutoTokenizer  # here, not at import: base_ref serves light stages too

    name, revision = base_ref(path)
    tok = AutoTokenizer.from_pretrained(name, revision=revision, trust_remote_code=False)
    fixed = template_vars(path)
    if fixed:
        if not tok.chat_template or not all(k in tok.chat_template for k in fixed):
            raise ValueError(f"{name}: its chat template has no {', '.join(fixed)} variable (set hub.thinking: null)")
        tok.chat_template = fix_template_vars(tok.chat_template, fixed)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def default_device() -> tuple[str, torch.dtype]:
    """("cuda", bfloat16) on a GPU machine, ("cpu", float32) elsewhere: inference stages use this."""
    return ("cuda", torch.bfloat16) if torch.cuda.is_available() else ("cpu", torch.float32)


def load_base(path: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    """(model, tokenizer) of the base in ``path``, in eval mode."""
    from transformers import AutoModelForCausalLM

    name, revision = base_ref(path)
    model = AutoModelForCausalLM.from_pretrained(name, revision=revision, dtype=dtype, trust_remote_code=False)
    return model.to(device).eval(), load_tokenizer(path)


LOCAL_REVISION = "local"  # base.hub.revision of a local folder: record whatever it holds


def record_hub(cfg, out: Path, key: str = "base.hub") -> dict:
    """``<out>/hub.json``: the model id and the revision resolved to a commit, or for a local folder its
    path and content hash, and with ``cfg.thinking`` not None the chat-template variable ``enable_thinking``
    that ``load_tokenizer`` fixes. ``cfg``: a ``config.HubModel``; ``key``: the params key named in errors."""
    if Path(cfg.model_id).is_dir():  # the local-path route: no hub, the content hash is the revision
        ref, route = {"model_id": cfg.model_id, "revision": folder_sha256(cfg.model_id)}, "local"
        if cfg.revision not in (LOCAL_REVISION, ref["revision"]):
            raise ParamsError(f"{key}.revision: {cfg.revision!r} is neither {LOCAL_REVISION!r} nor the "
                              f"content hash of local folder {cfg.model_id} ({ref['revision']})")
    else:
        from huggingface_hub import HfApi

        sha = HfApi().model_info(cfg.model_id, revision=cfg.revision).sha
        ref, route = {"model_id": cfg.model_id, "revision": sha}, "hub"
    if cfg.thinking is not None:
        ref["chat_template_vars"] = {"enable_thinking": cfg.thinking}
    out.mkdir(parents=True)
    (out / HUB_FILE).write_text(json.dumps(ref, indent=2) + "\n")
    return {"kind": "hub", "route": route, **ref}


def load_w0(base: str, modules: list[str]) -> dict[str, torch.Tensor]:
    """W0 of each of ``modules`` (``<module>.weight`` in the checkpoint) from ``base``: a model folder, the
    base stage's folder (its ``hub.json``: the hub id at its recorded revision; the local-path route reads
    the folder), or a hub id (its safetensors only). Only those tensors are read, in their stored dtype. A
    module the checkpoint lacks raises before any is returned."""
    from safetensors import safe_open

    name, revision = base_ref(base) if (Path(base) / HUB_FILE).is_file() else (str(base), None)
    folder = Path(name)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(name, revision=revision, allow_patterns=["*.safetensors", "*.json"]))
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no safetensors checkpoint")
    want = {f"{m}.weight": m for m in modules}
    out: dict[str, torch.Tensor] = {}
    for path in files:
        with safe_open(path, framework="pt") as f:
            for key in want.keys() & set(f.keys()):
                out[want[key]] = f.get_tensor(key)
    missing = [m for m in modules if m not in out]
    if missing:
        raise ValueError(f"{name}: the checkpoint has no weight of {len(missing)} target module(s), e.g. {missing[:3]}")
    return out
