"""PEFT LoRA adapters <-> per-module factors (A, B, scale), the only form the geometry ever sees.

Delta W = scale * B @ A with A (r, d_in), B (d_out, r), scale = alpha / r (alpha / sqrt(r) under
rsLoRA), read from ``adapter_config.json``. Modules are keyed by their path in the model, e.g.
``model.layers.3.self_attn.q_proj``, with layer index and projection parsed from it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<which>[AB])\.weight$")
_LAYER = re.compile(r"layers\.(\d+)\.")


class AdapterError(ValueError):
    """An adapter that is not a usable LoRA adapter; the message names the file and module."""


@dataclass(frozen=True)
class Factor:
    A: torch.Tensor  # (r, d_in) float64
    B: torch.Tensor  # (d_out, r) float64
    scale: float
    layer: int
    proj: str  # q_proj, k_proj, ...


def scale_of(cfg: dict) -> float:
    """alpha / r, or alpha / sqrt(r) with rsLoRA (PEFT's ``scaling``)."""
    r, alpha = cfg["r"], cfg["lora_alpha"]
    return alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r


def read_adapter(path: str | Path) -> dict[str, Factor]:
    """Factors of every LoRA module of the PEFT adapter folder ``path``, in float64, sorted by name."""
    path = Path(path)
    cfg_file, w_file = path / "adapter_config.json", path / "adapter_model.safetensors"
    for f in (cfg_file, w_file):
        if not f.is_file():
            raise AdapterError(f"{path}: missing {f.name}")
    cfg = json.loads(cfg_file.read_text())
    if cfg.get("peft_type") != "LORA":
        raise AdapterError(f"{cfg_file}: peft_type {cfg.get('peft_type')!r} is not LORA")
    if cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
        raise AdapterError(f"{cfg_file}: per-module rank_pattern/alpha_pattern are not supported")
    if cfg.get("use_dora"):
        raise AdapterError(f"{cfg_file}: DoRA (use_dora) is not supported: its update is not (alpha/r) B A")
    if cfg.get("fan_in_fan_out"):
        raise AdapterError(f"{cfg_file}: fan_in_fan_out (Conv1D weights stored transposed) is not supported")
    scale, r = scale_of(cfg), cfg["r"]
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in load_file(w_file).items():
        m = _KEY.match(key)
        if m is None:
            raise AdapterError(f"{w_file}: unexpected tensor {key!r}")
        parts.setdefault(m["module"], {})[m["which"]] = t
    out = {}
    for name in sorted(parts, key=_order):
        p = parts[name]
        if set(p) != {"A", "B"}:
            raise AdapterError(f"{w_file}: module {name} lacks lora_{'B' if 'A' in p else 'A'}")
        A, B = p["A"].to(torch.float64), p["B"].to(torch.float64)
        if A.ndim != 2 or B.ndim != 2 or A.shape[0] != r or B.shape[1] != r:
            raise AdapterError(f"{w_file}: module {name} has A {tuple(A.shape)}, B {tuple(B.shape)}; "
                               f"expected A (r={r}, d_in) and B (d_out, r={r})")
        layer = _LAYER.search(name)
        out[name] = Factor(A, B, scale, int(layer.group(1)) if layer else -1, name.rsplit(".", 1)[-1])
    if not out:
        raise AdapterError(f"{w_file}: no LoRA modules")
    return out


def _order(name: str):
    m = _LAYER.search(name)
    return (int(m.group(1)) if m else -1, name)


def check_same_modules(adapters: dict[str, dict[str, Factor]]) -> None:
    """All adapters cover the same modules with the same shapes; else AdapterError naming the module."""
    names = list(adapters)
    ref = adapters[names[0]]
    for other in names[1:]:
        a = adapters[other]
        missing, extra = sorted(set(ref) - set(a)), sorted(set(a) - set(ref))
        if missing or extra:
            raise AdapterError(f"adapters {names[0]} and {other} differ in modules: "
                               f"{other} lacks {missing[:3]}, has extra {extra[:3]}")
        for k in ref:
            if ref[k].A.shape[1] != a[k].A.shape[1] or ref[k].B.shape[0] != a[k].B.shape[0]:
                raise AdapterError(f"module {k}: {names[0]} is {tuple(ref[k].B.shape[0:1]) + tuple(ref[k].A.shape[1:])}"
                                   f" but {other} is {tuple(a[k].B.shape[0:1]) + tuple(a[k].A.shape[1:])}")


def frobenius(factors: dict[str, Factor]) -> float:
    """||Delta W||_F over all modules: sqrt(sum_m s^2 trace((B^T B)(A A^T)))."""
    return math.sqrt(sum(f.scale**2 * torch.trace((f.B.T @ f.B) @ (f.A @ f.A.T)).item() for f in factors.values()))


def write_deltas(path: str | Path, factors: dict[str, Factor]) -> None:
    """Per-module factors to one safetensors file: tensors ``<module>.A`` / ``<module>.B`` (float64),
    metadata ``modules`` = JSON list of {name, layer, proj, scale}."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors, meta = {}, []
    for name, f in factors.items():
        tensors[f"{name}.A"], tensors[f"{name}.B"] = f.A.contiguous(), f.B.contiguous()
        meta.append({"name": name, "layer": f.layer, "proj": f.proj, "scale": f.scale})
    save_file(tensors, path, metadata={"modules": json.dumps(meta)})


def read_deltas(path: str | Path) -> dict[str, Factor]:
    """Inverse of ``write_deltas``; a file without the metadata or with missing tensors raises AdapterError."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise AdapterError(f"{path}: file not found")
    with safe_open(path, framework="pt") as f:
        meta = (f.metadata() or {}).get("modules")
        if meta is None:
            raise AdapterError(f"{path}: no 'modules' metadata; not written by the deltas stage")
        keys = set(f.keys())
        out = {}
        for m in json.loads(meta):
            for part in ("A", "B"):
                if f"{m['name']}.{part}" not in keys:
                    raise AdapterError(f"{path}: module {m['name']} lacks tensor {part}")
            out[m["name"]] = Factor(f.get_tensor(f"{m['name']}.A"), f.get_tensor(f"{m['name']}.B"), m["scale"],
                                    m["layer"], m["proj"])
    return out


def save_adapter(peft_model, path: str | Path) -> None:
    """``save_pretrained`` plus a canonical ``adapter_config.json``: PEFT stores ``target_modules`` as a
    Python set, written in hash-randomised order, so the same adapter would get a different file
    (and DVC hash) in every process. Lists are sorted; keys sorted as PEFT writes them. Only the adapter
    "default" (the one trained; TRL's GRPO with a KL term adds a frozen "ref" copy beside it)."""
    path = Path(path)
    peft_model.save_pretrained(path, selected_adapters=["default"])
    cfg_file = path / "adapter_config.json"
    cfg = json.loads(cfg_file.read_text())
    if isinstance(cfg.get("target_modules"), list):
        cfg["target_modules"] = sorted(cfg["target_modules"])
    cfg_file.write_text(json.dumps(cfg, indent=2, sort_keys=True))


# ---------------------------------------------------------------- snapshots of a method's two runs
# train@<method> keeps, in its snapshot folder, the adapter of its run and of its seed twin at every snapshot step
# (``run/step_<n>/``, ``seed/step_<n>/``) and ``snapshots.json`` (the steps kept, the compare step);
# alignment@<method> reads them (``snapshot_pairs``) for ``analysis.seed_alignment``.
SNAPSHOT_RUNS = ("run", "seed")
SNAPSHOT_INDEX = "snapshots.json"


def snapshot_dir(folder: str | Path, step: int) -> Path:
    """The adapter of one run at ``step`` in its snapshot folder."""
    return Path(folder) / f"step_{step}"


def snapshot_steps_held(folder: str | Path) -> list[int]:
    """The steps of the adapters a run's snapshot folder holds, ascending."""
    return sorted(int(p.name.removeprefix("step_")) for p in Path(folder).glob("step_*"))


def snapshot_pairs(a: str | Path, b: str | Path):
    """(step, factors in ``a``, factors in ``b``) for every snapshot step, ascending, read one step at a time;
    ValueError before any is read when the two folders hold snapshots of different steps."""
    a, b = Path(a), Path(b)
    steps = snapshot_steps_held(a)
    if steps != snapshot_steps_held(b):
        raise ValueError(f"seed alignment: {a} and {b} hold snapshots of different steps")
    return ((s, read_adapter(snapshot_dir(a, s)), read_adapter(snapshot_dir(b, s))) for s in steps)
