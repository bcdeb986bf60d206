"""What the GPU check carries onto a bare GPU image: the params' validation library, unpacked per Python version.

    python tools/gpu_bundle.py            # -> .gpu-bundle/cp310 ... cp313 (git-ignored; `make gpu-bundle`)

A bare GPU image has torch, transformers, peft, accelerate, safetensors and PyYAML, no network and no way to
install a package. ``tools/gpu_check.py`` reads the profiles through ``weightspace.config``, which validates with
pydantic; where pydantic is missing it puts ``.gpu-bundle/cp<major><minor>`` on ``sys.path``. This script fills
those folders from the package registry (``pip download``, binary wheels for manylinux x86_64) with the versions
installed here, so the image runs the same validation code as this machine. About 31 MB unpacked for the four
Pythons, within the 64 MiB a device run carries.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pydantic", "pydantic_core", "annotated-types", "typing-inspection", "typing_extensions")
PYTHONS = ("3.10", "3.11", "3.12", "3.13")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / ".gpu-bundle"))
    args = ap.parse_args()
    pins = [f"{p}=={importlib.metadata.version(p)}" for p in PACKAGES]
    for py in PYTHONS:
        site = Path(args.out) / f"cp{py.replace('.', '')}"
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                            "--python-version", py, "--platform", "manylinux_2_17_x86_64", "--platform",
                            "manylinux2014_x86_64", "-d", tmp, *pins], check=True)
            site.mkdir(parents=True, exist_ok=True)
            for wheel in sorted(Path(tmp).glob("*.whl")):
                with zipfile.ZipFile(wheel) as z:
                    z.extractall(site)
        print(f"{site}: {', '.join(pins)}")


if __name__ == "__main__":
    main()
