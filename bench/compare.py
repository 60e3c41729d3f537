"""Equality of two sets of Gold tables: same windows and groups, same columns, values equal up to
floating-point summation order (rtol 1e-9)."""

from __future__ import annotations

import pandas as pd

KEYS = {
    "flight_phase_counts": ["window_start", "flight_phase"],
    "anomaly_alerts": ["window_start", "origin_country"],
}


def normalize(df: pd.DataFrame, table: str) -> pd.DataFrame:
    df = df.copy()
    for col in ("window_start", "window_end"):
        ts = pd.to_datetime(df[col])
        df[col] = (ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")).astype(
            "datetime64[us, UTC]"
        )
    for col in df.columns:
        if col.endswith(("_count", "_observations", "_anomalies")):
            df[col] = df[col].astype("int64")
    return df.sort_values(KEYS[table]).reset_index(drop=True)


def compare(left: dict[str, pd.DataFrame], right: dict[str, pd.DataFrame]) -> dict:
    """{equal, tables: {name: {equal, rows_left, rows_right, detail}}}."""
    out = {}
    for table in KEYS:
        a, b = normalize(left[table], table), normalize(right[table], table)
        entry = {"rows_left": len(a), "rows_right": len(b)}
        try:
            if list(a.columns) != list(b.columns):
                raise AssertionError(f"columns differ: {list(a.columns)} vs {list(b.columns)}")
            dupes = int(a.duplicated(KEYS[table]).sum() + b.duplicated(KEYS[table]).sum())
            if dupes:
                raise AssertionError(f"{dupes} windows written twice")
            pd.testing.assert_frame_equal(a, b, check_dtype=False, rtol=1e-9, atol=1e-6)
            entry.update(equal=True, detail="equal")
        except AssertionError as exc:
            entry.update(equal=False, detail=" ".join(str(exc).split())[:500])
        out[table] = entry
    return {"equal": all(e["equal"] for e in out.values()), "tables": out}


def read_gold(root_paths) -> dict[str, pd.DataFrame]:
    from deltalake import DeltaTable

    return {t: DeltaTable(root_paths.gold_table(t)).to_pandas() for t in KEYS}
