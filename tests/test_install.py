"""The gpu extra resolves together with the CPU pins (needs PyPI)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib

import pytest

from conftest import REPO


@pytest.mark.slow
def test_the_gpu_extra_resolves_with_the_cpu_pins_from_metadata(tmp_path):
    """``pip install --dry-run --ignore-installed --report`` of ``.[gpu]``: pip resolves vllm, torch and
    transformers to the project's own pins, one set for CPU and GPU machines. Nothing is installed, but pip
    fetches each wheel it resolves to read its metadata (the index here serves neither PEP 658 metadata files
    nor range requests): vllm (320 MB) and its CUDA libraries pass through pip's temporary folder."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {m["name"]: m["version"] for d in (*deps["dependencies"], *deps["optional-dependencies"]["gpu"])
            if (m := re.fullmatch(r"(?P<name>[\w.-]+)==(?P<version>[\w.]+)", d))}
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                           "--report", str(tmp_path / "report.json"), "-e", f"{REPO}[gpu]"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = {i["metadata"]["name"].lower(): i["metadata"]["version"]
           for i in json.loads((tmp_path / "report.json").read_text())["install"]}
    for name in ("vllm", "torch", "transformers", "trl", "peft", "accelerate"):
        assert got[name].split("+")[0] == pins[name], (name, got[name], pins[name])  # torch: 2.13.0+cpu from disk
