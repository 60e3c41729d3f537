"""The driver JVM's class-data sharing archive (the JDK's AppCDS): Spark, Scala and Delta classes
as the Gold job loads them, parsed and verified once, mapped from a file at every later start.

Every start of the job (a supervised stream restarts after every fault, and Gold is frozen until
its first commit) spends seconds loading and verifying the same tens of thousands of classes: the
Spark session and Delta's first snapshot of Silver_ML are mostly that. The archive is made once,
by `python -m flight_gold.spark.session --build-class-archive` (make jars, the quick start), from
a small run of the job in a JVM started with -XX:ArchiveClassesAtExit. Its file name holds a key
of the Java runtime and of Spark's jars, so an upgrade of either finds no archive (and runs as
before) instead of a stale one. A JVM that cannot use an archive ignores it (-Xshare:auto, the
default): the archive only ever makes a start faster.

Measured (docs/performance.md, "Start and restart time"): the Spark session 5.7-6.3 -> 4.0-4.3 s,
and the restart after 20,000 Silver_ML commits to its first Gold commit ~3 s sooner.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from flight_gold.core.config import GoldConfig

log = logging.getLogger(__name__)

# Set by the archive build for its training run only: the path its JVM writes the archive to.
DUMP_ENV = "FLIGHT_GOLD_CLASS_ARCHIVE_DUMP"
# The JVM reports an archive it cannot use (another JDK build, other jars) at its start: the
# archive is keyed so that this does not happen, and the start goes on without it if it does.
QUIET = "-Xlog:cds=off,cds+dynamic=off"


def java_binary() -> Path | None:
    """The java Spark's launcher runs: $JAVA_HOME/bin/java, else the first on PATH."""
    home = os.environ.get("JAVA_HOME")
    found = Path(home, "bin", "java") if home else None
    if found is None or not found.exists():
        which = shutil.which("java")
        found = Path(which) if which else None
    return found.resolve() if found is not None else None


def spark_jars() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "jars"


@functools.cache
def archive_key() -> str | None:
    """A digest of what the archive depends on: the Java runtime and Spark's jars (names, sizes).
    Computed once per process (every session build and spark-submit asks for it): neither
    changes under a running process."""
    java = java_binary()
    if java is None:
        return None
    digest = hashlib.sha256()
    stat = java.stat()
    digest.update(f"{java}:{stat.st_size}:{int(stat.st_mtime)}".encode())
    for jar in sorted(spark_jars().glob("*.jar")):
        digest.update(f"{jar.name}:{jar.stat().st_size}".encode())
    return digest.hexdigest()[:16]


def archive_path(config: GoldConfig) -> Path | None:
    key = archive_key()
    if key is None:
        return None
    return Path(config.jars_cache).expanduser().resolve() / "class-archive" / f"flight-gold-driver-{key}.jsa"


def java_options(config: GoldConfig) -> str:
    """The driver's JVM options for the archive: use it when it is there (write it in a build)."""
    dump = os.environ.get(DUMP_ENV)
    if dump:
        return f"-XX:ArchiveClassesAtExit={dump} {QUIET}"
    path = archive_path(config)
    # Spark splits Java options at spaces: a path with one would break the driver's command line.
    if path is None or not path.is_file() or any(c.isspace() for c in str(path)):
        return ""
    return f"-XX:SharedArchiveFile={path} {QUIET}"


def build_archive(config: GoldConfig, timeout_s: float = 900) -> Path | None:
    """Makes the archive for this Java runtime and these jars (a training run of the job on a
    small temporary lakehouse in a child process, ~1 minute); returns its path, or None when
    there is no Java. An archive already there is kept."""
    path = archive_path(config)
    if path is None:
        log.warning("no java found: no class archive made")
        return None
    remove_other_keys(path, "flight-gold-driver-*.jsa")
    if path.is_file():
        log.info("class archive %s is there already", path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="flight-gold-class-archive-") as work:
        partial = Path(work) / "archive.jsa"
        env = {**os.environ, DUMP_ENV: str(partial), "GOLD_JARS_CACHE": config.jars_cache}
        run = subprocess.run(
            [sys.executable, "-m", "flight_gold.spark.classdata", str(Path(work) / "lakehouse")],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if run.returncode != 0 or not partial.is_file() or partial.stat().st_size == 0:
            raise RuntimeError(
                f"the class archive's training run failed (exit {run.returncode}, archive "
                f"{'written' if partial.is_file() else 'not written'}): {run.stderr[-2000:]}"
            )
        move_into_place(partial, path)
    log.info("class archive written to %s (%.0f MiB)", path, path.stat().st_size / 2**20)
    return path


def remove_other_keys(path: Path, pattern: str) -> None:
    """Removes the files matching `pattern` beside the keyed file `path`: other keys' (left by an
    upgrade of Java, Spark or a source: nothing uses them again; a class archive is ~200 MiB). A
    driver still running with one keeps its mapping."""
    for other in path.parent.glob(pattern):
        if other.name != path.name:
            other.unlink(missing_ok=True)
            log.info("removed %s: another key's (Java runtime, jar set or source)", other)


def move_into_place(partial: Path, path: Path) -> None:
    """Moves a file made elsewhere (a temporary folder) to `path` so that a reader of `path` never
    sees a partial file."""
    shutil.move(str(partial), path.with_suffix(".partial"))
    os.replace(path.with_suffix(".partial"), path)


def _train(root: str) -> int:
    """The training run: the Gold job as it starts and restarts (two available-now runs of both
    queries on the recording's first minutes, the second resuming from the first's checkpoints),
    then the JVM is ended so that it writes the archive before this process exits."""
    import threading

    from flight_gold.feed.replay import replay_all_at_once
    from flight_gold.spark.runner import APP_NAME, run_gold_streams
    from flight_gold.spark.session import build_spark_session

    config = GoldConfig.from_env(None, lakehouse_root=root, trigger="available-now", spark_master="local[2]")
    replay_all_at_once(config, minutes=6)
    spark = build_spark_session(config, APP_NAME, metrics=True)
    codes = [run_gold_streams(spark, config, threading.Event())]
    # The same minutes again, moved to now: new windows for the resumed queries.
    replay_all_at_once(config, minutes=6, shift_to_now=True)
    codes.append(run_gold_streams(spark, config, threading.Event()))
    spark.stop()
    end_jvm()
    return 0 if codes == [0, 0] else 1


def end_jvm(timeout_s: float = 300) -> None:
    """Closes the driver JVM's standard input, as PySpark's exit does, and waits for it to exit
    (which is when it writes the archive). PySpark's launcher keeps the JVM's process on its
    gateway (`SparkContext._gateway.proc`): the one private attribute this module reads
    (tests/spark/test_classdata.py fails if it moves)."""
    from pyspark import SparkContext

    proc = SparkContext._gateway.proc
    proc.stdin.close()
    proc.wait(timeout=timeout_s)


if __name__ == "__main__":
    from flight_gold.core.logs import configure_logging

    configure_logging()
    sys.exit(_train(sys.argv[1]))
