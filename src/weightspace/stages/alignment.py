"""Stage alignment@<method>: is the method's own direction above its seed noise? The seed-alignment
curve from the snapshots ``train@<method>`` kept of its run and of its seed twin (``<snapshots>/run``,
``<snapshots>/seed``, ``<snapshots>/snapshots.json``): at every snapshot step the two runs' mean
|<u1, u1'>| and |<v1, v1'>| over modules, the median angle between u1 and u1' and the global cosine
(``analysis.seed_alignment``) -> ``<plots>`` (CSV) and ``<metrics>`` (the curve and its row at the
compare step). Reads no params."""

from __future__ import annotations

import json
from pathlib import Path

from ..model.adapters import SNAPSHOT_INDEX, SNAPSHOT_RUNS, snapshot_pairs, snapshot_steps_held
from ..weights.analysis import seed_alignment
from .common import parse, write_json


def main(argv=None) -> None:
    import pandas as pd

    args, _ = parse(__doc__, {"method": "method (for messages)", "snapshots": "train@<method>'s snapshot folder",
                              "metrics": "metrics JSON", "plots": "curve CSV"}, argv)
    snaps = Path(args.snapshots)
    run, seed = (snaps / r for r in SNAPSHOT_RUNS)
    kept = json.loads((snaps / SNAPSHOT_INDEX).read_text())
    held = snapshot_steps_held(run)
    if held != kept["steps"]:
        raise ValueError(f"alignment@{args.method}: {run} holds steps {held}, train@{args.method} "
                         f"kept {kept['steps']} ({snaps / SNAPSHOT_INDEX})")
    at_step = kept["compare_step"]
    curve = seed_alignment(snapshot_pairs(run, seed))
    at = next((r for r in curve if r["step"] == at_step), None)
    if at is None:
        raise ValueError(f"alignment@{args.method}: an adapter did not move from its init by the compare step "
                         f"{at_step} (Delta W = 0): no seed alignment to report")
    Path(args.plots).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(curve).to_csv(args.plots, index=False)
    write_json(args.metrics, {"method": args.method, "compare_step": at, "curve": curve})


if __name__ == "__main__":
    main()
