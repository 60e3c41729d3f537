"""The benchmark's PNG: micro-batch durations, Gold freshness and driver memory over time, job
against the seed's configuration."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt

COLORS = {"job": "#1f77b4", "seed": "#d62728"}
MARKERS = {"flight_phase_counts": "o", "anomaly_alerts": "^"}


def render(results: dict, path: str) -> None:
    fig, axes = plt.subplots(3, 1, figsize=(11, 11), constrained_layout=True)
    ax_batch, ax_fresh, ax_mem = axes

    for variant in ("job", "seed"):
        rt = (results.get(variant) or {}).get("realtime") or {}
        batches = rt.get("batches") or []
        if not batches:
            continue
        t0 = rt["t0_ms"]
        for query, marker in MARKERS.items():
            own = [b for b in batches if b["query"] == query]
            ax_batch.plot(
                [(b["start_ms"] - t0) / 1000 for b in own],
                [b["duration_ms"] for b in own],
                marker=marker,
                linestyle="-",
                linewidth=0.6,
                markersize=3.5,
                color=COLORS[variant],
                alpha=0.85 if query == "flight_phase_counts" else 0.55,
                label=f"{variant}: {query}",
            )
        windows = rt.get("freshness", {}).get("windows") or []
        for query, marker in MARKERS.items():
            own = [w for w in windows if w["table"] == query]
            ax_fresh.scatter(
                [(w["silver_commit_ms"] - t0) / 1000 for w in own],
                [w["freshness_s"] for w in own],
                marker=marker,
                color=COLORS[variant],
                s=22,
                label=f"{variant}: {query}",
            )
        rss = rt.get("rss") or []
        ax_mem.plot(
            [s[0] for s in rss],
            [s[1] / 2**20 for s in rss],
            color=COLORS[variant],
            label=f"{variant}: driver RSS (real-time run)",
        )
        floor = rt.get("heap_floor") or []
        if floor:
            ax_mem.plot(
                [s[0] for s in floor],
                [s[1] / 2**20 for s in floor],
                color=COLORS[variant],
                linestyle="--",
                marker=".",
                label=f"{variant}: JVM heap after young GCs, 5-min floor",
            )
        full = rt.get("heap_after_full_gc") or []
        if full:
            ax_mem.scatter(
                [s[0] for s in full],
                [s[1] / 2**20 for s in full],
                color=COLORS[variant],
                marker="D",
                label=f"{variant}: live heap after a full GC",
            )

    interval = results.get("settings", {}).get("trigger_interval_s")
    ax_batch.set(
        title="Real-time micro-batch duration (feed at real pace)",
        xlabel="seconds since the run started",
        ylabel="batch duration (ms)",
        yscale="log",
    )
    ax_batch.axhline(300, color="grey", linestyle=":", linewidth=1, label="goal: 300 ms")
    ax_batch.legend(fontsize=8, ncol=2)
    ax_fresh.set(
        title="Gold freshness: closing Silver commit -> Gold commit",
        xlabel="seconds since the run started",
        ylabel="freshness (s)",
    )
    if interval:
        ax_fresh.axhline(
            interval + 1,
            color="grey",
            linestyle=":",
            linewidth=1,
            label=f"goal: trigger interval + 1 s = {interval + 1:g} s",
        )
    ax_fresh.legend(fontsize=8, ncol=2)
    ax_mem.set(
        title="Driver memory: RSS (Python + JVM) and the live JVM heap",
        xlabel="seconds since the run started",
        ylabel="MiB",
    )
    ax_mem.legend(fontsize=8)
    fig.suptitle(results.get("title", "Flight Gold benchmark"), fontsize=11)
    fig.savefig(path, dpi=90)
    plt.close(fig)
