"""The log store for local roots (flight_gold.spark.logstore): it answers Delta's listings as
Delta's own HDFSLogStore does, reads a file's status only when Delta gets to it, and the session
uses it. Compared through the JVM against HDFSLogStore on the same folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from py4j.protocol import Py4JJavaError

from flight_gold.core.config import GoldConfig
from flight_gold.spark import logstore
from flight_gold.spark.session import spark_conf

pytestmark = pytest.mark.e2e


def delta_log_folder(root: Path, commits: int) -> Path:
    """A _delta_log as Delta and Hadoop leave it: commits with checksums, a checkpoint, the
    checkpoint pointer, a folder, and a hidden Hadoop checksum file."""
    log = root / "_delta_log"
    (log / "_commits").mkdir(parents=True)
    for version in range(commits):
        (log / f"{version:020d}.json").write_text("{}\n" * (version + 1))
        (log / f"{version:020d}.crc").write_text("crc")
    (log / f"{commits // 2:020d}.checkpoint.parquet").write_bytes(b"PAR1" * 10)
    (log / "_last_checkpoint").write_text("{}")
    (log / f".{1:020d}.json.crc").write_bytes(b"hidden")
    # Not sorted by creation time: a listing must sort by name.
    os.utime(log / f"{0:020d}.json", (1_000_000_000, 1_000_000_000))
    return log


def jvm_listing(spark, store_class: str, start: Path, file_system: str | None = None):
    jvm = spark._jvm
    conf = spark._jsc.hadoopConfiguration()
    if file_system is not None:
        conf = jvm.org.apache.hadoop.conf.Configuration(conf)
        conf.set("fs.file.impl", file_system)
        conf.setBoolean("fs.file.impl.disable.cache", True)
    # As Delta loads it: by name, from Spark's class loader (spark.jars).
    cls = jvm.org.apache.spark.util.Utils.classForName(store_class, True, False)
    gateway = spark.sparkContext._gateway
    parameter_types = gateway.new_array(jvm.java.lang.Class, 1)
    parameter_types[0] = conf.getClass()
    args = gateway.new_array(jvm.java.lang.Object, 1)
    args[0] = conf
    store = cls.getConstructor(parameter_types).newInstance(args)
    return store.listFrom(jvm.org.apache.hadoop.fs.Path(start.as_uri()), conf)


def described(statuses) -> list[tuple]:
    out = []
    while statuses.hasNext():
        s = statuses.next()
        out.append((s.getPath().toString(), s.getLen(), s.getModificationTime(), s.isDirectory()))
    return out


@pytest.fixture(scope="module")
def built(spark):
    config = GoldConfig.from_env({})
    path = logstore.build_jar(config)
    assert path.is_file()
    # The session of these tests was built with the project's settings: the store is loaded.
    assert spark.sparkContext.getConf().get("spark.delta.logStore.file.impl") == logstore.CLASS_NAME
    return path


@pytest.mark.parametrize("file_system", [None, "org.apache.hadoop.fs.LocalFileSystem"])
def test_listings_equal_delta_s_own_store(spark, built, tmp_path, file_system):
    log = delta_log_folder(tmp_path / "table", commits=25)
    for start in [".0", f"{0:020d}", f"{12:020d}", f"{12:020d}.checkpoint", f"{24:020d}", f"{25:020d}", "_"]:
        ours = described(jvm_listing(spark, logstore.CLASS_NAME, log / start, file_system))
        delta_s = described(jvm_listing(spark, "io.delta.storage.HDFSLogStore", log / start, file_system))
        assert ours == delta_s, start
    whole = described(jvm_listing(spark, logstore.CLASS_NAME, log / ".0", file_system))
    names = [Path(p).name for p, *_ in whole]
    # 25 commits and their checksums, the checkpoint, the pointer and the folder, in name order;
    # Hadoop's hidden checksum file too, unless the file system is the checksummed one.
    hidden = [] if file_system else [f".{1:020d}.json.crc"]
    assert names == hidden + sorted(names[len(hidden) :])
    assert len(names) == len(hidden) + 25 * 2 + 3


def test_a_missing_folder_is_file_not_found_like_delta_s_store(spark, built, tmp_path):
    for store in (logstore.CLASS_NAME, "io.delta.storage.HDFSLogStore"):
        with pytest.raises(Py4JJavaError) as raised:
            jvm_listing(spark, store, tmp_path / "no_table" / "_delta_log" / f"{0:020d}")
        assert raised.value.java_exception.getClass().getName() == "java.io.FileNotFoundException"


def test_statuses_are_read_as_the_listing_is_consumed(spark, built, tmp_path):
    log = delta_log_folder(tmp_path / "table", commits=10)
    statuses = jvm_listing(spark, logstore.CLASS_NAME, log / f"{0:020d}")
    first = statuses.next()
    # Removed after the folder was read and before Delta got to them (log cleanup): skipped, as
    # Hadoop's listing skips a file removed while it lists; the rest is still there, in order.
    for version in range(1, 5):
        (log / f"{version:020d}.json").unlink()
    (log / f"{7:020d}.json").write_text("{}\n" * 100)
    rest = described(statuses)
    names = [Path(first.getPath().toString()).name] + [Path(p).name for p, *_ in rest]
    assert names[0] == f"{0:020d}.crc"
    assert [n for n in names if n.endswith(".json")] == [f"{v:020d}.json" for v in (0, 5, 6, 7, 8, 9)]
    # Its status is read when reached: the size written after the listing.
    assert dict((Path(p).name, size) for p, size, *_ in rest)[f"{7:020d}.json"] == 300


def test_the_delta_tables_of_a_session_work_through_it(spark, built, tmp_path):
    path = str(tmp_path / "table")
    for batch in range(12):  # past Delta's checkpoint at version 10
        spark.range(batch * 10, batch * 10 + 10).write.format("delta").mode("append").save(path)
    from delta.tables import DeltaTable

    history = DeltaTable.forPath(spark, path).history().select("version").collect()
    assert sorted(row.version for row in history) == list(range(12))
    assert spark.read.format("delta").option("versionAsOf", 4).load(path).count() == 50
    assert sorted(r.id for r in spark.read.format("delta").load(path).collect()) == list(range(120))
    assert (tmp_path / "table" / "_delta_log" / f"{10:020d}.checkpoint.parquet").is_file()


def test_settings_only_for_local_roots_with_the_jar_built(tmp_path, monkeypatch):
    local = GoldConfig.from_env({}, lakehouse_root=str(tmp_path / "lake"), jars_cache=str(tmp_path / "ivy"))
    s3 = GoldConfig.from_env({}, lakehouse_root="s3a://bucket/lake", jars_cache=str(tmp_path / "ivy"))
    assert logstore.log_store_conf(local) == {}  # not built in this cache
    jar = logstore.jar_path(local)
    jar.parent.mkdir(parents=True)
    jar.write_bytes(b"")
    assert logstore.log_store_conf(local) == {
        "spark.jars": str(jar),
        "spark.delta.logStore.file.impl": logstore.CLASS_NAME,
    }
    assert spark_conf(local)["spark.delta.logStore.file.impl"] == logstore.CLASS_NAME
    assert logstore.log_store_conf(s3) == {}
    assert "spark.delta.logStore.file.impl" not in spark_conf(s3)


def test_the_jar_follows_its_source(tmp_path, monkeypatch):
    config = GoldConfig.from_env({}, jars_cache=str(tmp_path / "ivy"))
    before = logstore.jar_path(config)
    edited = tmp_path / "LocalNameListingLogStore.java"
    edited.write_text(logstore.SOURCE.read_text() + "\n// edited\n")
    monkeypatch.setattr(logstore, "SOURCE", edited)
    assert logstore.jar_path(config) != before


def test_build_errors_say_what_is_missing(tmp_path, monkeypatch):
    config = GoldConfig.from_env({}, jars_cache=str(tmp_path / "ivy"))
    with pytest.raises(RuntimeError, match=r"resolve the Delta jars first"):
        logstore.build_jar(config)  # an empty jars cache: no delta-storage to compile against
    monkeypatch.setattr(logstore.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match=r"no javac on PATH"):
        logstore.build_jar(config)


def test_the_settings_are_found_from_the_zipped_package_spark_submit_runs(tmp_path):
    # Under spark-submit (the DAGs) the driver imports flight_gold from --py-files' zip.
    import subprocess
    import sys

    from flight_gold.airflow.submit import build_package_zip

    zipped = build_package_zip(tmp_path)
    config = GoldConfig.from_env({})
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); import flight_gold; "
            "assert flight_gold.__file__.startswith(sys.argv[1]), flight_gold.__file__; "
            "from flight_gold.core.config import GoldConfig; from flight_gold.spark import logstore; "
            "print(logstore.jar_path(GoldConfig.from_env()))",
            zipped,
        ],
        env={**os.environ, "GOLD_JARS_CACHE": config.jars_cache},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == str(logstore.jar_path(config))
