"""Training any registered method with one call: ``methods.get(name).fit(...)``.

``Method`` is the registry's entry (``registry``: its params section, rows, loss normaliser, ...) plus how
it trains: offline through ``training.fit``, online through ``online.fit`` (TRL's GRPOTrainer). The
training stages train through this module; what only reads the registry (params validation, the
analyses, the report) imports ``registry`` and so never depends on the training code. A method's params
class: ``methods.get(name).params``."""

from __future__ import annotations

from dataclasses import dataclass, fields

from . import registry
from .registry import NAMES, parse_run_name, run_name  # noqa: F401


@dataclass(frozen=True)
class Method(registry.Method):
    def train_cfg(self, p, cfg):
        """The shared ``train`` section as this method's runs read it: an online run has its own step
        count and no separate compare step (``online.train_cfg``); what the snapshot steps read."""
        if self.online:
            from . import online

            return online.train_cfg(p, cfg)
        return cfg

    def own_process(self, p) -> bool:
        """Whether each run trains in a fresh process: an online method on TRL's colocated vLLM, which
        claims its share of GPU memory up front and does not release it within a process."""
        return self.online and p.engine == "vllm"

    def fit(self, p, lr: float, cfg, base: str, init: str, rows: list[dict], out: str, deltas: str | None = None,
            plots: str | None = None, *, seed: int, snapshot_dir: str | None = None,
            checkpoint_dir: str | None = None) -> dict:
        """Train this method (params ``p``, peak LR ``lr``, the shared ``train`` section ``cfg``) from the
        LoRA init and row order in ``init`` on the rollout ``rows``: its adapter to ``out``, its factors to
        ``deltas``, curves to ``plots``, the adapters at ``train_cfg(...)``'s snapshot steps to
        ``snapshot_dir``. Offline: ``training.fit`` (its randomness is all in ``init``; resumable
        checkpoints in ``checkpoint_dir``); online: ``online.fit``, TRL's GRPOTrainer sampling from
        ``seed``. Returns the run's summary (the main process; under ``accelerate launch`` others ``{}``)."""
        if self.online:
            from . import online

            return online.fit(self.name, p, lr, online.train_cfg(p, cfg), base, init, rows, out, deltas, plots,
                              snapshot_dir, seed=seed)
        from . import training

        return training.fit(self, p, lr, cfg, base, init, rows, out, deltas, plots, checkpoint_dir=checkpoint_dir,
                            snapshot_dir=snapshot_dir)


REGISTRY: dict[str, Method] = {name: Method(**{f.name: getattr(e, f.name) for f in fields(e)})
                               for name, e in registry.REGISTRY.items()}


def get(name: str) -> Method:
    """The entry of ``name`` with its ``fit``; ParamsError naming the known methods otherwise."""
    registry.get(name)
    return REGISTRY[name]
