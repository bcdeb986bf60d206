"""A registry entry: what every method module's ``METHOD`` holds (the fields below) and the training units it
selects from the rollout table (``Method.units``; the kinds and their order: the registry's docstring and
``units``). A module of its own, so the method modules and the registry that finds them both import it
and neither imports the other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Optional

from ..core.schema import ParamsError
from ..core.units import Mismatch, Preference


@dataclass(frozen=True)
class Method:
    name: str
    params: type  # its params.yaml section
    rows: Literal["all", "positive", "pairs", "unpaired", "prompts"]
    reference: bool = False  # the loss reads the reference's (the base's) sequence log-probs
    normaliser: Literal["tokens", "units"] = "tokens"
    min_micro_batch: int = 1  # train.micro_batch_size at least this (KTO: its z0 is a mean over a micro-batch)
    online: bool = False  # trained by TRL's GRPOTrainer on its own samples (``train.run.Online``), not the offline loop
    offline: Optional[str] = None  # an online method's offline counterpart (the geometry's second reference)
    # its place among the paper's six losses (1 SFT, 2 RFT, 3 DFT, 4 RIFT, 5 offline GRPO, 6 DPO); None: not one
    paper: Optional[int] = None
    family: bool = False  # the paper's SFT family (SFT, RFT, RIFT): imitation of the table's rows
    # (its params, a ``losses.Batch``) -> the micro-batch's loss; None for an online method (its trainer's own)
    loss: Optional[Callable] = None
    # (its params, the table's rows) -> per-row tensors computed once per table (``losses.Batch.table``)
    table: Optional[Callable] = None

    def units(self, p, rows: list[dict], order: list[int]) -> list:
        """Training units in the persisted ``order`` (see the module docstring; their types: ``units``)."""
        if self.rows == "all":
            return list(order)
        if self.rows == "positive":
            return [i for i in order if rows[i]["reward"] == 1]
        if self.rows == "prompts":  # one per prompt group, in the order of each group's first row
            return list(dict.fromkeys(rows[i]["group"] for i in order))
        if self.rows == "unpaired":
            return [Mismatch((i, _other_group(rows, order, k))) for k, i in enumerate(order)]
        by_group: dict[int, list[int]] = {}
        for i in order:
            by_group.setdefault(rows[i]["group"], []).append(i)
        units = []
        for members in by_group.values():  # dict keeps first-seen (persisted) order
            pos = [i for i in members if rows[i]["reward"] == 1]
            neg = [i for i in members if rows[i]["reward"] == 0]
            if pos and neg:
                units += ([Preference((pos[0], neg[0]))] if p.pairing == "one"
                          else [Preference((a, b)) for a in pos for b in neg])
        return units


def _other_group(rows: list[dict], order: list[int], k: int) -> int:
    """The nearest row before position ``k`` of ``order`` (cyclically) whose prompt group differs."""
    g = rows[order[k]]["group"]
    for step in range(1, len(order)):
        j = order[(k - step) % len(order)]
        if rows[j]["group"] != g:
            return j
    raise ParamsError("kto: every rollout row shares one prompt; the KL estimate needs two prompts")
