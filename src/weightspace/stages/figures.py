"""Stage figures: every PNG of the report, from the metric files and plot tables the compute stages
wrote (``figures.draw_all``); the compute stages draw nothing, so a figure's style is changed by
re-running this stage alone. Also the curves of ``dvc plots`` in long form (``<series>/*.csv``, one
line per method or pair: ``figures.series_tables``), so that dvc.yaml names none. Params: ``methods``."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from .common import parse

log = logging.getLogger(__name__)


def main(argv=None) -> None:
    args, params = parse(__doc__, {"metrics_dir": "folder of metric files", "tables": "folder of plot tables",
                                   "out": "figures folder", "series": "folder of the long-form curves"}, argv)
    from ..figures import draw_all, series_tables

    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)  # nothing stale from an earlier run
    pngs = draw_all(args.metrics_dir, args.tables, out, list(params.methods))
    curves = series_tables(args.metrics_dir, args.tables, args.series, list(params.methods))
    log.info("figures: %d PNGs under %s, %d curves under %s", len(pngs), out, len(curves), args.series)


if __name__ == "__main__":
    main()
