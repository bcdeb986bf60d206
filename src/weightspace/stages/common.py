"""What every stage does first: parse paths, validate params.yaml, fix threads and logging."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from .. import config


def parse(description: str, paths: dict[str, str], argv=None) -> tuple[argparse.Namespace, config.Params]:
    """Parse ``--<name> PATH`` for each entry of ``paths`` (name -> help) plus ``--params``, then load
    and validate the whole params file, before any compute."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--params", default="params.yaml")
    for name, help_ in paths.items():
        ap.add_argument(f"--{name}", required=True, help=help_)
    args = ap.parse_args(argv)
    logging.basicConfig(level=os.environ.get("LOGLEVEL", "INFO"), format="%(asctime)s %(name)s: %(message)s")
    params = config.load(args.params)
    return args, params


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
