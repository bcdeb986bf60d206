"""Training checkpoints, so a killed run resumes from its last checkpoint instead of step 0.

Every ``train.checkpoint_every`` steps the main process writes ``<folder>/step-<k>/``:
``lora.safetensors`` (every trainable tensor), ``optimizer.safetensors`` (AdamW's per-parameter
state, as tensors), ``rng.safetensors`` (torch's CPU and CUDA generator states) and ``state.json``
(the step, the scheduler's state, the optimizer's param groups, the loss/LR history for the curves,
and the run's fingerprint). No pickle. A checkpoint is written to ``step-<k>.partial`` and renamed,
so a kill never leaves a half checkpoint that looks whole; older ones are then removed.

The data position is the step itself: step s trains on units [s*B, (s+1)*B) of the persisted order.
So on one machine a resumed run is byte-identical to an uninterrupted one. A checkpoint whose
fingerprint (method, LR, train section, method section, init hash, rollout table hash, process count)
differs from the run's is ignored with a warning, never resumed from.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)


def folder_for(out: str | Path) -> Path:
    """Where the run writing ``out`` keeps its checkpoints: ``<out's folder>/.checkpoints/<out's name>``,
    beside ``out`` and not in it, so they outlive DVC's removal of ``out`` before a re-run."""
    out = Path(out)
    return out.parent / ".checkpoints" / out.name


class Checkpoints:
    def __init__(self, folder: str | Path, every: int | None, fingerprint: str):
        self.folder, self.every, self.fingerprint = Path(folder), every, fingerprint

    def due(self, step: int, total: int) -> bool:
        return self.every is not None and step % self.every == 0 and step < total

    def latest(self) -> Path | None:
        """The newest complete checkpoint of this run, or None."""
        steps = sorted((int(p.name.split("-")[1]), p) for p in self.folder.glob("step-*")
                       if p.is_dir() and not p.name.endswith(".partial"))
        for _, path in reversed(steps):
            state = json.loads((path / "state.json").read_text())
            if state["fingerprint"] == self.fingerprint:
                return path
            log.warning("%s: written by another run (fingerprint differs); not resuming from it", path)
        return None

    def save(self, step: int, model, opt, sched, history: list) -> None:
        final = self.folder / f"step-{step}"
        tmp = final.with_name(final.name + ".partial")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        save_file({n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad},
                  tmp / "lora.safetensors")
        sd = opt.state_dict()
        save_file({f"{i}.{k}": v.detach().cpu().contiguous() for i, st in sd["state"].items() for k, v in st.items()},
                  tmp / "optimizer.safetensors")
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
        save_file(rng, tmp / "rng.safetensors")
        (tmp / "state.json").write_text(json.dumps({
            "step": step, "fingerprint": self.fingerprint, "scheduler": sched.state_dict(),
            "param_groups": sd["param_groups"], "history": history}))
        tmp.rename(final)
        for old in self.folder.glob("step-*"):
            if old != final:
                shutil.rmtree(old)
        log.info("checkpoint: step %d -> %s", step, final)

    def restore(self, model, opt, sched) -> tuple[int, list]:
        """Load the latest checkpoint into (model, opt, sched) and torch's RNG; returns (its step, the
        history so far), or (0, []) when there is none."""
        path = self.latest()
        if path is None:
            return 0, []
        state = json.loads((path / "state.json").read_text())
        params = dict(model.named_parameters())
        with torch.no_grad():
            for n, t in load_file(path / "lora.safetensors").items():
                params[n].copy_(t)
        tensors = load_file(path / "optimizer.safetensors")
        opt_state: dict[int, dict] = {}
        for key, t in tensors.items():
            i, name = key.split(".", 1)
            opt_state.setdefault(int(i), {})[name] = t
        opt.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
        sched.load_state_dict(state["scheduler"])
        rng = load_file(path / "rng.safetensors")
        torch.set_rng_state(rng["cpu"])
        if torch.cuda.is_available() and "cuda0" in rng:
            torch.cuda.set_rng_state_all([rng[f"cuda{i}"] for i in range(torch.cuda.device_count())])
        log.info("resumed from %s: step %d done, running steps %d..", path, state["step"], state["step"] + 1)
        return state["step"], state["history"]

    def clear(self) -> None:
        if self.folder.exists():
            shutil.rmtree(self.folder)
