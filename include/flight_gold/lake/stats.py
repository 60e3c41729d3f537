"""What a Delta table's log says about its data without reading it: the bounds of a column from
the file statistics of the current snapshot (a scan of the column only when a file has none)."""

from __future__ import annotations

from datetime import datetime

from flight_gold.core.times import as_utc


def column_bounds(dt, column: str) -> tuple[datetime | None, datetime | None]:
    """(min, max) of a timestamp column over the table's current files; (None, None) when the
    table holds no row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    files = pa.table(dt.get_add_actions(flatten=True))
    if files.num_rows == 0:
        return None, None
    low, high = f"min.{column}", f"max.{column}"
    if {low, high} <= set(files.column_names) and not files[low].null_count and not files[high].null_count:
        bounds = pc.min(files[low]).as_py(), pc.max(files[high]).as_py()
    else:
        values = pa.RecordBatchReader.from_stream(dt.scan(columns=[column])).read_all()[column]
        bounds = pc.min(values).as_py(), pc.max(values).as_py()
    return tuple(None if b is None else as_utc(b) for b in bounds)
