"""Stage lr_sweep@<method>: the method retrained at each multiplier of its own peak LR
(``controls.lr_sweep``, the paper's three LRs per loss; ``[]`` = off, and then nothing is imported or
trained) from the shared init -> ``<out>/<method>_x<mult>/`` (adapter) and
``<out>/<method>_x<mult>.safetensors`` (deltas), ``<metrics>``. Params: ``controls.lr_sweep``,
``<method>``, ``train``, ``threads``."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from .common import parse, set_threads, write_json

log = logging.getLogger(__name__)


def run_name(method: str, mult: float) -> str:
    """``dpo_x10``, ``sft_x0.1``: the sweep run of ``method`` at ``mult`` x its LR."""
    return f"{method}_x{mult:g}"


def main(argv=None) -> None:
    args, params = parse(__doc__, {"method": "method (a params section)", "base": "base model",
                                   "init": "init stage folder", "rollouts": "rollout table", "out": "output folder",
                                   "metrics": "metrics JSON"}, argv)
    m = args.method
    mcfg = params.method(m)  # unknown method: ParamsError before any compute
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    runs = {}
    if params.controls.lr_sweep:
        from .. import methods
        from ..rollouts import load_table
        from ..training import fit

        set_threads(params.threads)
        rows = load_table(args.rollouts)
        for mult in params.controls.lr_sweep:
            name = run_name(m, mult)
            if methods.get(m).online:  # TRL's trainer: no checkpoints, sampling seeded by train.seed
                from .. import online

                runs[name] = online.fit(m, mcfg, mult * mcfg.lr, online.train_cfg(mcfg, params.train), args.base,
                                        args.init, rows, str(out / name), str(out / f"{name}.safetensors"),
                                        seed=params.train.seed)
            else:
                runs[name] = fit(m, mcfg, mult * mcfg.lr, params.train, args.base, args.init, rows, str(out / name),
                                 str(out / f"{name}.safetensors"),
                                 checkpoint_dir=str(out.parent / ".checkpoints" / out.name / name))
            runs[name]["multiplier"] = mult
            log.info("lr_sweep %s: %s", name, runs[name])
    write_json(args.metrics, {"method": m, "multipliers": list(params.controls.lr_sweep), "runs": runs})


if __name__ == "__main__":
    main()
