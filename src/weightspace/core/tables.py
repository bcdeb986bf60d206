"""The plot tables: CSV files that ``dvc plots`` and the figures stage read. Written and read here
only, with pandas."""

from __future__ import annotations

from pathlib import Path


def write_csv(path: str | Path, rows, float_format: str | None = None) -> None:
    """``rows``: a list of records or a dict of equal-length columns, in column order; floats written
    with ``float_format`` (``None``: shortest round-trip repr)."""
    import pandas as pd

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False, float_format=float_format, lineterminator="\n")


def read_csv(path: str | Path, sep: str = ","):
    """The table as a pandas DataFrame (``sep`` tab: dvclive's TSV curves)."""
    import pandas as pd

    return pd.read_csv(path, sep=sep)
