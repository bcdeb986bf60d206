"""The keyword names of the vLLM calls this project makes, read with ``ast`` from a vLLM source tree
(no import, no GPU), written as JSON for the stand-in vLLM of the tests (``tests/stubs/vllm``), which
rejects any other keyword as the real one would.

    python tools/vllm_signatures.py /path/to/vllm-0.31.0 tests/data/vllm_signatures.json

Read: ``LLM.__init__``, ``LLM.chat`` and ``LLM.generate`` (``vllm/entrypoints/llm.py``), the fields of
``SamplingParams`` (``vllm/sampling_params.py``) and ``LoRARequest`` (``vllm/lora/request.py``), both
msgspec Structs whose fields are class annotations, the fields of ``EngineArgs``
(``vllm/engine/arg_utils.py``: what ``LLM(**kwargs)`` forwards to), the ranks ``max_lora_rank`` accepts
(``MaxLoRARanks`` in ``vllm/config/lora.py``) and the fields of ``CompletionOutput`` (``vllm/outputs.py``).
The version and commit come from ``vllm/_version.py`` (written into the sdist)."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path


def _tree(root: Path, rel: str) -> ast.Module:
    path = root / rel
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; is {root} a vLLM source tree?")
    return ast.parse(path.read_text(), str(path))


def _class(tree: ast.Module, name: str, rel: str) -> ast.ClassDef:
    found = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name]
    if not found:
        raise ValueError(f"{rel}: no top-level class {name}")
    return found[0]


def fields(tree: ast.Module, name: str, rel: str) -> list[str]:
    """Annotated class attributes: the fields of a dataclass or msgspec Struct (ClassVar excluded)."""
    out = []
    for n in _class(tree, name, rel).body:
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name):
            if "ClassVar" not in ast.unparse(n.annotation):
                out.append(n.target.id)
    return out


def params(tree: ast.Module, cls: str, method: str, rel: str) -> dict:
    """Parameter names of ``cls.method`` (self dropped) and whether it takes ``**kwargs``."""
    for n in _class(tree, cls, rel).body:
        if isinstance(n, ast.FunctionDef) and n.name == method:
            a = n.args
            names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs][1:]
            return {"params": names, "var_keyword": a.kwarg.arg if a.kwarg else None}
    raise ValueError(f"{rel}: {cls} has no method {method}")


def literal(tree: ast.Module, name: str, rel: str) -> list:
    for n in tree.body:
        if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in n.targets):
            sub = n.value
            if isinstance(sub, ast.Subscript) and ast.unparse(sub.value) == "Literal":
                return list(ast.literal_eval(sub.slice))
    raise ValueError(f"{rel}: no Literal assignment {name}")


def version(root: Path) -> tuple[str, str]:
    """``__version__`` and ``__commit_id__`` of ``vllm/_version.py`` (setuptools-scm writes the commit as
    ``g<short sha>``, git describe's form; the ``g`` is dropped)."""
    found = {}
    for n in _tree(root, "vllm/_version.py").body:  # ``__version__ = version = '0.31.0'``: one Assign, two targets
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant):
            found.update({t.id: n.value.value for t in n.targets if isinstance(t, ast.Name)})
    commit = found["__commit_id__"]
    return found["__version__"], commit[1:] if commit and commit.startswith("g") else commit


def extract(root: Path) -> dict:
    llm_rel, sp_rel, lora_rel = "vllm/entrypoints/llm.py", "vllm/sampling_params.py", "vllm/lora/request.py"
    ea_rel, lc_rel, out_rel = "vllm/engine/arg_utils.py", "vllm/config/lora.py", "vllm/outputs.py"
    llm = _tree(root, llm_rel)
    ver, commit = version(root)
    return {
        "vllm_version": ver, "commit": commit,
        "source": "the vllm sdist on PyPI (vllm-%s.tar.gz), read by tools/vllm_signatures.py" % ver,
        "LLM.__init__": params(llm, "LLM", "__init__", llm_rel),
        "LLM.chat": params(llm, "LLM", "chat", llm_rel),
        "LLM.generate": params(llm, "LLM", "generate", llm_rel),
        "EngineArgs": fields(_tree(root, ea_rel), "EngineArgs", ea_rel),
        "SamplingParams": fields(_tree(root, sp_rel), "SamplingParams", sp_rel),
        "LoRARequest": fields(_tree(root, lora_rel), "LoRARequest", lora_rel),
        "CompletionOutput": fields(_tree(root, out_rel), "CompletionOutput", out_rel),
        "MaxLoRARanks": literal(_tree(root, lc_rel), "MaxLoRARanks", lc_rel),
    }


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        raise SystemExit("usage: python tools/vllm_signatures.py <vllm source tree> <out.json>")
    out = extract(Path(argv[0]))
    Path(argv[1]).write_text(json.dumps(out, indent=1) + "\n")
    print(f"{argv[1]}: vllm {out['vllm_version']} ({out['commit']})")


if __name__ == "__main__":
    main()
