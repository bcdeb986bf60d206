"""What every stage does first: parse paths, validate params.yaml, fix threads and logging."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from .. import config


# a file: each stage appends the params keys it read and the registry entries it fetched (tests/test_graph.py)
PARAMS_READ = "WEIGHTSPACE_PARAMS_READ"


def parse(description: str, paths: dict[str, str], argv=None) -> tuple[argparse.Namespace, config.Params]:
    """Parse ``--<name> PATH`` for each entry of ``paths`` (name -> help) plus ``--params``, then load
    and validate the whole params file, before any compute. With ``$WEIGHTSPACE_PARAMS_READ`` set, the
    process appends to that file, when it exits, one JSON line: its module and arguments, the params keys it read
    (``schema.trace``) and the registry entries it fetched (``registry.get``; params validation reads every
    module's section without fetching its entry)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--params", default="params.yaml")
    for name, help_ in paths.items():
        ap.add_argument(f"--{name}", required=True, help=help_)
    args = ap.parse_args(argv)
    logging.basicConfig(level=os.environ.get("LOGLEVEL", "INFO"), format="%(asctime)s %(name)s: %(message)s")
    params = config.load(args.params)
    if os.environ.get(PARAMS_READ):
        import atexit
        import sys

        from .. import registry, schema

        schema.trace(params)
        registry.record()
        spec = getattr(sys.modules["__main__"], "__spec__", None)  # python -m <module>: the stage's module
        atexit.register(_write_reads, os.environ[PARAMS_READ], [getattr(spec, "name", sys.argv[0]), *sys.argv[1:]])
    return args, params


def _write_reads(path: str, argv: list[str]) -> None:
    from .. import registry, schema

    with open(path, "a") as f:
        f.write(json.dumps({"argv": argv, "read": schema.reads(), "entries": registry.used()}) + "\n")


def set_threads(n: int) -> None:
    """``n`` CPU threads and deterministic algorithms, called by every compute stage before it touches a model.

    ``torch.use_deterministic_algorithms(True)`` on CUDA raises at the first cuBLAS call unless
    ``CUBLAS_WORKSPACE_CONFIG`` is ``:4096:8`` (or ``:16:8``) before CUDA initialises (PyTorch's
    reproducibility notes), so it is set here (``setdefault``: a value from the environment wins) before
    torch is imported by this function; CPU runs ignore it."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    import torch

    torch.set_num_threads(n)
    torch.use_deterministic_algorithms(True)


def write_json(path: str | Path, obj) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
