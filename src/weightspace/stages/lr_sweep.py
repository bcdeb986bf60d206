"""Stage lr_sweep@<method>: the method retrained at each absolute peak LR of ``controls.lr_sweep`` (the
paper's grid, the same for every loss; ``[]`` = off, and then nothing is imported or trained) from the
shared init -> ``<out>/<method>_lr<lr>/`` (adapter) and ``<out>/<method>_lr<lr>.safetensors`` (deltas),
``<metrics>``. A grid LR equal to the method's own ``lr`` is skipped: that run is ``train@<method>``.
Params: ``controls.lr_sweep``, ``<method>``, ``train``, ``threads``."""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

from .. import registry
from .common import parse, set_threads, write_json

log = logging.getLogger(__name__)


def sweep_lrs(grid, own_lr: float) -> list[float]:
    """The grid's LRs but the method's own (its main run, ``train@<method>``), in grid order."""
    return [lr for lr in grid if not math.isclose(lr, own_lr, rel_tol=1e-9)]


def main(argv=None) -> None:
    args, params = parse(__doc__, {"method": "method (a params section)", "base": "base model",
                                   "init": "init stage folder", "rollouts": "rollout table", "out": "output folder",
                                   "metrics": "metrics JSON"}, argv)
    m = args.method
    mcfg, entry = params.method(m), registry.get(m)  # unknown method: ParamsError before any compute
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    runs, lrs = {}, sweep_lrs(params.controls.lr_sweep, mcfg.lr)
    if lrs:
        from ..data.rollouts import load_table
        from ..train import run
        from ..train.checkpoints import folder_for

        set_threads(params.threads)
        rows = load_table(args.rollouts)
        for lr in lrs:
            name = registry.run_name(m, lr)
            runs[name] = run.fit(entry, mcfg, lr, params.train, args.base, args.init, rows, str(out / name),
                                 str(out / f"{name}.safetensors"), seed=params.train.seed,
                                 checkpoint_dir=str(folder_for(out) / name))
            log.info("lr_sweep %s: %s", name, runs[name])
        if not all(runs.values()):
            return  # not the main process (accelerate launch: fit returns {} there): the main one writes metrics
    write_json(args.metrics, {"method": m, "lrs": lrs, "runs": runs})


if __name__ == "__main__":
    main()
