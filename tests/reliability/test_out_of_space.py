"""The Gold folder on a small file system that fills up: the job fails with a clear error; once
space is freed it resumes from its checkpoint and Gold equals the independent computation."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from support.expected import expected_gold
from support.jobs import (
    START,
    TABLES,
    append_silver,
    assert_gold_is,
    error_lines,
    lakehouse_config,
    progress,
    run_job,
    silver_frame,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(2400),
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a size-limited tmpfs needs root"),
]

VERSIONS = 20
# Every Gold commit costs about 4 pages per table (commit JSON, checksum, 1-2 Parquet files):
# this fills after a few micro-batches of the 20.
SMALL = "192k"


@pytest.fixture
def small_gold(tmp_path):
    config = lakehouse_config(tmp_path / "lakehouse")
    mount_point = Path(config.lakehouse_root) / "gold"
    mount_point.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SMALL}", "tmpfs", str(mount_point)], check=True)
    try:
        yield config, mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)
        if os.path.ismount(mount_point):
            subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_gold_disk_fails_clearly_and_the_job_resumes_after_space_is_freed(small_gold):
    config, mount_point = small_gold
    frames = [silver_frame(120, START + pd.Timedelta(minutes=k), 60, seed=40 + k) for k in range(VERSIONS)]
    # A new checkpoint reads the snapshot in one batch: it starts on the first version, then the
    # other 19 come one per batch.
    append_silver(config, frames[0])
    assert run_job(config).returncode == 0
    for frame in frames[1:]:
        append_silver(config, frame)

    full = run_job(config, "--max-files-per-trigger", "1")
    assert full.returncode == 1, full.stderr[-4000:]
    errors = error_lines(full.stderr)
    assert errors and all("out of space: no space left on device" in e for e in errors), full.stderr[-4000:]
    assert any(config.paths.gold_table(t) in e for e in errors for t in TABLES), errors
    assert any(line["input_rows"] for line in progress(full.stderr)), (
        "no batch completed before the disk filled"
    )

    # Space freed (the file system grown in place): the next run resumes and completes Gold.
    subprocess.run(["mount", "-o", "remount,size=64m", str(mount_point)], check=True)
    resumed = run_job(config, "--max-files-per-trigger", "1")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert error_lines(resumed.stderr) == []
    expected = expected_gold(pd.concat(frames, ignore_index=True))
    assert_gold_is(config, expected)
