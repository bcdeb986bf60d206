"""The method registry: what a method *is* (how it trains: ``train.run``). One module of this package per
method, e.g. ``registry/dpo.py``: its params section (a ``schema.Section``, the ``params.yaml`` section of
the same name), its loss as a pure function of log-probabilities with its formula, the micro-batch
wiring of that loss (``Method.loss``, reading a ``losses.Batch``), and its ``METHOD`` entry: the rollout
rows it trains on, whether the loss reads the reference's log-probs and what it is normalised by. This
package finds the modules itself, so nothing else lists the methods.

Only a method's own ``train@`` (and ``lr_sweep@``) stage depends on its module. Every stage validates the
whole params file through ``config``, which reads every module's section, but that check cannot change a
stage's output (it passes or the stage stops), so no other stage lists the modules; the stages that
read entries of every method (geometry, report: ``Method.offline``) list the folder.
``tests/test_graph.py`` checks this against the entries each stage fetches with ``get`` when it runs.

Adding a loss = one module here (its section class, its pure loss with a hand-derived test, ``METHOD``)
and one section in ``params.yaml`` (and ``profiles/*.yaml``). ``dvc exp run -S 'methods=[...]'`` then
trains it, every analysis covers it, and no existing method's training re-runs.

Training units (``Method.units``), in the persisted row order:

- ``all``: every row; ``positive``: rows with reward 1;
- ``pairs``: (chosen, rejected) row pairs of mixed groups (``pairing`` one: the first correct and the
  first incorrect row of the group in the order; all: every combination); pairs follow their group's
  first row;
- ``unpaired``: (row, other) for every row, where ``other`` is the nearest earlier row in the order
  (cyclically) from another prompt group: the row's completion under its own prompt is the training
  sequence, ``other``'s completion under the row's prompt the mismatched sequence of KTO's KL estimate.
- ``prompts``: the prompt groups (an online method samples its own completions of each prompt; its
  trainer, not the table's rows, decides what it trains on).

An online method (``Method.online``) has no loss here: ``train.run.fit`` trains it with TRL's
``GRPOTrainer`` from the same init, and its adapter enters every analysis like any other.

Normalisers: ``tokens`` = the completion tokens of the training rows of the effective batch (summed over
micro-batches and processes); ``units`` = the number of units (pairs, rows) of the effective batch.
The modules import torch only inside their losses, so a stage that only validates params stays light.
"""

from __future__ import annotations

import importlib
import pkgutil

from ..core.schema import ParamsError
from ._entry import Method


def _discover() -> dict[str, Method]:
    """Every module of this package but ``_entry`` (``_``-prefixed), by name: its ``METHOD``, whose name must be
    the module's."""
    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        entry = getattr(importlib.import_module(f"{__name__}.{info.name}"), "METHOD", None)
        if not isinstance(entry, Method) or entry.name != info.name:
            raise TypeError(f"weightspace/registry/{info.name}.py: needs METHOD = Method({info.name!r}, ...)")
        found[info.name] = entry
    places = sorted(e.paper for e in found.values() if e.paper is not None)
    if places != sorted(set(places)):
        raise TypeError(f"weightspace/registry: two entries claim one place among the paper's losses ({places})")
    return found


REGISTRY: dict[str, Method] = _discover()
NAMES = tuple(REGISTRY)
def get(name: str) -> Method:
    """The registry entry of ``name``; ParamsError naming the known methods otherwise."""
    if name not in REGISTRY:
        raise ParamsError(f"method {name!r}: unknown (expected one of {', '.join(NAMES)})")
    return REGISTRY[name]


def paper_six() -> tuple[str, ...]:
    """The paper's six losses in its order (SFT, RFT, DFT, RIFT, offline GRPO, DPO): the entries with ``paper``.
    A claim over "every method" ranges over these, whatever else a run trains."""
    return tuple(sorted((n for n in NAMES if get(n).paper), key=lambda n: get(n).paper))


def family() -> tuple[str, ...]:
    """The paper's SFT family (SFT, RFT, RIFT) in the paper's order: the entries with ``family``."""
    return tuple(n for n in paper_six() if get(n).family)


def opt_in(name: str) -> bool:
    """Whether params may name method ``name`` where it is not trained (a connectivity pair), the pair then
    left out: an online method, which a run trains only on request (``grpo_online-grpo``)."""
    return REGISTRY[name].online


def run_name(method: str, lr: float) -> str:
    """``dpo_lr5e-06``, ``sft_lr0.0001``: the sweep run of ``method`` at peak LR ``lr``."""
    return f"{method}_lr{lr:g}"


def parse_run_name(name: str) -> tuple[str, float]:
    """(method, lr) of a ``run_name``."""
    m, lr = name.rsplit("_lr", 1)
    return m, float(lr)
