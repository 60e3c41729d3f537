"""The driver JVM's class archive (flight_gold.spark.classdata): made once for a Java runtime and
Spark's jars, used by every later driver started through the project's settings, ignored when
it does not fit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from flight_gold.core.config import GoldConfig
from flight_gold.spark import classdata
from flight_gold.spark.session import spark_conf
from support.drivers import run_driver


@pytest.fixture(autouse=True)
def key_of_this_process():
    # archive_key() is cached per process; a test that fakes the jars or Java must not leave
    # its key to the tests after it.
    classdata.archive_key.cache_clear()
    yield
    classdata.archive_key.cache_clear()


def test_the_driver_options_name_the_archive_only_when_it_is_there(tmp_path, monkeypatch):
    config = GoldConfig.from_env({"GOLD_JARS_CACHE": str(tmp_path / "ivy")}, lakehouse_root=str(tmp_path))
    monkeypatch.delenv(classdata.DUMP_ENV, raising=False)
    assert spark_conf(config)["spark.driver.defaultJavaOptions"] == "-Xss16m"
    path = classdata.archive_path(config)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"archive")
    assert spark_conf(config)["spark.driver.defaultJavaOptions"] == (
        f"-Xss16m -XX:SharedArchiveFile={path} {classdata.QUIET}"
    )
    # Spark splits Java options at spaces: no archive rather than a broken command line.
    spaced = GoldConfig.from_env({"GOLD_JARS_CACHE": str(tmp_path / "my ivy")}, lakehouse_root=str(tmp_path))
    classdata.archive_path(spaced).parent.mkdir(parents=True)
    classdata.archive_path(spaced).write_bytes(b"archive")
    assert spark_conf(spaced)["spark.driver.defaultJavaOptions"] == "-Xss16m"
    # The build's training run writes a new one instead.
    monkeypatch.setenv(classdata.DUMP_ENV, str(tmp_path / "new.jsa"))
    options = spark_conf(config)["spark.driver.defaultJavaOptions"]
    assert f"-XX:ArchiveClassesAtExit={tmp_path / 'new.jsa'}" in options


def test_another_set_of_spark_jars_or_another_java_gets_another_archive(tmp_path, monkeypatch):
    jars = tmp_path / "jars"
    jars.mkdir()
    (jars / "spark-core.jar").write_bytes(b"1")
    monkeypatch.setattr(classdata, "spark_jars", lambda: jars)
    # The key is computed once per process: each cache_clear() below stands for a new process.
    before = classdata.archive_key()
    (jars / "spark-core.jar").write_bytes(b"12")  # an upgrade in place
    assert classdata.archive_key() == before
    classdata.archive_key.cache_clear()
    assert classdata.archive_key() != before
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\n")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    assert classdata.java_binary() == java.resolve()
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "none"))  # a JAVA_HOME without java: PATH's
    assert classdata.java_binary() != java.resolve()


def test_making_an_archive_removes_the_archives_of_other_keys(tmp_path):
    config = GoldConfig.from_env({"GOLD_JARS_CACHE": str(tmp_path / "ivy")}, lakehouse_root=str(tmp_path))
    path = classdata.archive_path(config)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this one")
    old = path.with_name("flight-gold-driver-0123456789abcdef.jsa")  # before an upgrade
    old.write_bytes(b"old")
    unrelated = path.with_name("notes.txt")
    unrelated.write_text("kept")
    assert classdata.build_archive(config) == path  # there already: no training run
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, "notes.txt"])
    assert path.read_bytes() == b"this one"


def test_pyspark_keeps_the_driver_process_where_end_jvm_reads_it(spark):
    # end_jvm() waits on it for the archive to be written: fails here if PySpark moves it.
    from pyspark import SparkContext

    proc = SparkContext._gateway.proc
    assert isinstance(proc, subprocess.Popen) and proc.poll() is None


@pytest.mark.e2e
def test_a_driver_started_with_the_projects_settings_loads_its_classes_from_the_archive(tmp_path):
    config = GoldConfig.from_env()
    # make jars (the test command's prerequisite) has made it; made here if not (~1 minute).
    path = classdata.build_archive(config)
    assert path is not None and path.is_file()
    log = tmp_path / "classes.log"
    # The driver's own JVM (the launcher's JVM writes the file first, the driver then replaces it).
    run_driver(
        tmp_path,
        "spark.range(3).count()",
        app="flight-gold-class-archive-test",
        env={"JDK_JAVA_OPTIONS": f"-Xlog:class+load=info:file={log}"},
    )
    lines = Path(log).read_text().splitlines()
    from_archive = [line for line in lines if "source: shared objects file (top)" in line]
    assert any("org.apache.spark.sql.SparkSession " in line for line in from_archive)
    assert len(from_archive) > 5_000, f"{len(from_archive)} of {len(lines)} classes from the archive"
