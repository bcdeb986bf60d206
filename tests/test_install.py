"""One pin set for CPU and GPU machines: the gpu extra resolves together with the CPU pins (needs PyPI)."""

from __future__ import annotations

import re
import subprocess
import tomllib

import pytest

from conftest import REPO, VENV_BIN


def pins() -> dict[str, str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {m["name"]: m["version"] for d in (*deps["dependencies"], *deps["optional-dependencies"]["gpu"])
            if (m := re.fullmatch(r"(?P<name>[\w.-]+)==(?P<version>[\w.]+)", d))}


def resolve(tmp_path, *extra: str) -> dict[str, str]:
    """``uv pip compile pyproject.toml`` for a Linux x86_64 machine with Python 3.11 (the GPU machines' platform,
    whatever this one is): the versions it resolves, read from package metadata only (uv fetches a wheel's
    METADATA, never the wheel: vllm's 320 MB and the CUDA libraries are not downloaded)."""
    out = tmp_path / f"resolved{'-'.join(('',) + extra)}.txt"
    cmd = [str(VENV_BIN / "uv"), "pip", "compile", str(REPO / "pyproject.toml"), *(a for e in extra for a in ("--extra", e)),
           "--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_28", "--no-header", "--no-annotate",
           "--quiet", "-o", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return dict(line.split("==", 1) for line in out.read_text().splitlines() if "==" in line and not line.startswith("#"))


@pytest.mark.slow
def test_the_gpu_extra_resolves_with_the_cpu_pins(tmp_path):
    """`pip install -e ".[gpu]"` has a solution, and it is the CPU install's pins plus vllm: vllm, torch,
    transformers, TRL, PEFT and accelerate resolve to the versions pyproject.toml pins, with and without the extra."""
    want = pins()
    gpu, cpu = resolve(tmp_path, "gpu"), resolve(tmp_path)
    for name in ("vllm", "torch", "transformers", "trl", "peft", "accelerate"):
        assert gpu[name] == want[name], (name, gpu[name], want[name])
        if name != "vllm":
            assert cpu[name] == want[name], (name, cpu[name], want[name])
    assert "vllm" not in cpu
