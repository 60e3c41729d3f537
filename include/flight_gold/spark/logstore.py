"""Delta's log store for local roots, listing `_delta_log` by name (jvm/LocalNameListingLogStore.java).

Delta lists a table's log some twenty times before a restarted stream's first Gold commit, and its
store for local paths (HDFSLogStore) lists through Hadoop, which stats every entry of the folder
five times, whatever version Delta lists from: after a day of Silver_ML commits that is most of a
restart. The class here is HDFSLogStore with a listing that reads names and stats only what Delta
consumes; Delta loads it by its public setting `spark.delta.logStore.file.impl`.

It is compiled once by `python -m flight_gold.spark.session --build-log-store` (make jars), with
the JDK's javac, against Spark's Hadoop and the cached delta-storage jar, into a jar in the jars
cache whose name holds a key of its source and of those jars. Without that jar (no javac, or the
setup step skipped) the jobs use Delta's own store and are only slower to restart; an object
store root (s3a://) never uses it.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import tempfile
import zipfile
from importlib import resources
from pathlib import Path

from flight_gold.core.config import GoldConfig
from flight_gold.spark.classdata import move_into_place, remove_other_keys, spark_jars

log = logging.getLogger(__name__)

# Read through importlib.resources: under spark-submit the package is imported from a zip.
SOURCE = resources.files("flight_gold.spark") / "jvm" / "LocalNameListingLogStore.java"
CLASS_NAME = "flightgold.delta.LocalNameListingLogStore"
# The jars it compiles against: the Hadoop API Spark ships, and Delta's storage module.
HADOOP_API_GLOB = "hadoop-client-api-*.jar"
SLF4J_GLOB = "slf4j-api-*.jar"


def delta_storage_jar(config: GoldConfig) -> Path:
    # Imported here: the session module imports this one for its settings.
    from flight_gold.spark.session import DELTA_VERSION

    jars = Path(config.jars_cache).expanduser().resolve() / "jars"
    return jars / f"io.delta_delta-storage-{DELTA_VERSION}.jar"


def compile_classpath(config: GoldConfig) -> list[Path]:
    """Spark's Hadoop API and SLF4J jars (a pattern in place of one not found), Delta's storage."""
    shipped = [
        next(iter(sorted(spark_jars().glob(g))), spark_jars() / g) for g in (HADOOP_API_GLOB, SLF4J_GLOB)
    ]
    return [*shipped, delta_storage_jar(config)]


def jar_path(config: GoldConfig) -> Path:
    """Where the jar is: its name holds a digest of the source and of the jars' names (versions),
    so that an edit or an upgrade builds a new one instead of loading a stale one."""
    digest = hashlib.sha256(SOURCE.read_bytes())
    for jar in compile_classpath(config):
        digest.update(jar.name.encode())
    key = digest.hexdigest()[:16]
    return Path(config.jars_cache).expanduser().resolve() / "log-store" / f"flight-gold-log-store-{key}.jar"


def log_store_conf(config: GoldConfig) -> dict[str, str]:
    """The Spark settings that put the log store in place: none on an object store root, or when
    its jar was not built (Delta's own store is then used)."""
    if config.is_s3:
        return {}
    jar = jar_path(config)
    if not jar.is_file():
        return {}
    return {"spark.jars": str(jar), "spark.delta.logStore.file.impl": CLASS_NAME}


def build_jar(config: GoldConfig) -> Path:
    """Compiles the log store into its jar (kept if it is there already); RuntimeError when there
    is no javac or the jars it needs are missing, with what to do."""
    path = jar_path(config)
    if path.is_file():
        log.info("log store jar %s is there already", path)
        return path
    javac = shutil.which("javac")
    if javac is None:
        raise RuntimeError("no javac on PATH (a JDK, not only a JRE, is needed to build the log store)")
    classpath = compile_classpath(config)
    missing = [str(jar) for jar in classpath if not jar.is_file()]
    if missing:
        raise RuntimeError(
            f"jars to compile the log store against are missing ({', '.join(missing)}): "
            "resolve the Delta jars first (python -m flight_gold.spark.session --resolve-jars)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="flight-gold-log-store-") as work:
        source = Path(work, SOURCE.name)
        source.write_bytes(SOURCE.read_bytes())
        classes = Path(work, "classes")
        run = subprocess.run(
            [javac, "--release", "17", "-nowarn", "-cp", ":".join(map(str, classpath)), "-d", str(classes)]
            + [str(source)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if run.returncode != 0:
            raise RuntimeError(f"javac failed (exit {run.returncode}): {run.stderr[-2000:]}")
        partial = Path(work, "log-store.jar")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as jar:
            for cls in sorted(classes.rglob("*.class")):
                jar.write(cls, cls.relative_to(classes).as_posix())
        remove_other_keys(path, "flight-gold-log-store-*.jar")
        move_into_place(partial, path)
    log.info("log store %s built into %s", CLASS_NAME, path)
    return path
