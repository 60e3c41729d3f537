"""A Spark driver of the project's own making (`build_spark_session` with the settings from the
environment) run in a child process: for what only a fresh JVM shows (its master under
spark-submit, the classes it loads), which the suite's shared session cannot."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

DRIVER = """
from flight_gold.core.config import GoldConfig
from flight_gold.spark.session import build_spark_session

spark = build_spark_session(GoldConfig.from_env(), {app!r})
{body}
spark.stop()
"""


def run_driver(
    workdir: Path,
    body: str,
    *,
    app: str,
    launcher: Sequence[str] = (sys.executable,),
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """Runs `body` (Python using `spark`) in a new driver started by `launcher` (python, or
    spark-submit and its options) with `env` added to this process's environment; fails the test
    with the driver's stderr when it exits non-zero. Returns the finished process (text output)."""
    script = Path(workdir) / f"{app}.py"
    script.write_text(DRIVER.format(app=app, body=body))
    run = subprocess.run(
        [*launcher, str(script)],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def printed(run: subprocess.CompletedProcess, *keys: str) -> dict[str, str]:
    """The `KEY value` lines a driver printed, for the keys asked."""
    prefixes = tuple(f"{key} " for key in keys)
    return dict(line.split(" ", 1) for line in run.stdout.splitlines() if line.startswith(prefixes))
