"""The native stack's services other than Airflow: PostgreSQL, S3 (moto), the SMTP and Slack
receivers (or Mailpit), the Spark standalone cluster and the Silver_ML replay."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

from support.stack import procs
from support.stack.compose import translate_command
from support.stack.core import REPO, VENV_BIN

CACHE = REPO / ".cache"
TESTS = REPO / "tests"


def pg_bindir() -> Path:
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not found:
        raise RuntimeError(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): "
            "apt-get install postgresql (.ci/run does)"
        )
    return found[-1].parent


def pg_user() -> str:
    """The unprivileged user the server runs as (it refuses root): Debian's `postgres`."""
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("no OS user 'postgres' (Debian's postgresql package creates it)") from None
    return "postgres"


def as_user(user: str, argv: list[str]) -> list[str]:
    """setpriv execs in place: the pid is the server's own (no su/runuser parent in between)."""
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *argv]


def java_home() -> str:
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    java = shutil.which("java")
    if not java:
        raise RuntimeError("no java on PATH and JAVA_HOME unset (Spark needs Java 17)")
    return str(Path(java).resolve().parent.parent)


def pyspark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def ensure_mailpit(version: str) -> Path:
    """Mailpit `version` in .cache/bin, built with `go install` the first time (~5 minutes),
    offline from the module cache afterwards."""
    binary, stamp = CACHE / "bin" / "mailpit", CACHE / "bin" / "mailpit.version"
    if binary.exists() and stamp.exists() and stamp.read_text().strip() == version:
        return binary
    go = os.environ.get("GO") or shutil.which("go") or "/usr/local/go/bin/go"
    env = {
        **os.environ,
        "GOBIN": str(CACHE / "bin"),
        "GOMODCACHE": str(CACHE / "gomod"),
        "GOCACHE": str(CACHE / "gobuild"),
        "GOFLAGS": "-modcacherw",
        "GOTOOLCHAIN": "local",
    }
    downloads = CACHE / "gomod" / "cache" / "download"
    if (downloads / "github.com" / "axllent" / "mailpit" / "@v" / f"{version}.zip").exists():
        # `go install pkg@version` looks the module up even with GOPROXY=off; the module cache's
        # download folder is a valid file:// proxy.
        env.update({"GOPROXY": f"file://{downloads}", "GOSUMDB": "off"})
    subprocess.run([go, "install", f"github.com/axllent/mailpit@{version}"], check=True, env=env)
    stamp.write_text(version + "\n")
    return binary


class ServicesMixin:
    """start_<service>() of the components that are not Airflow; self is a support.stack.Stack."""

    def start_postgres(self) -> None:
        bindir, user = pg_bindir(), pg_user()
        ep = self.info["endpoints"]["postgres"]
        root = self.base / "postgres"
        data, sock = root / "data", root / "sock"
        sock.mkdir(parents=True, exist_ok=True)
        pwfile = root / "pwfile"
        pwfile.write_text(self.settings["POSTGRES_PASSWORD"] + "\n")
        for path in (root, sock, pwfile):
            shutil.chown(path, user, user)
        env = {"LC_ALL": "C.UTF-8"}
        # The compose image's POSTGRES_USER is the cluster's superuser, with POSTGRES_PASSWORD.
        db_user, db = self.settings["POSTGRES_USER"], self.settings.get("POSTGRES_DB") or "airflow"
        initdb = [str(bindir / "initdb"), "-D", str(data), "-U", db_user, "-E", "UTF8", "--locale=C.UTF-8"]
        initdb += ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        self.run_once("postgres-initdb", as_user(user, initdb), env)
        pwfile.unlink()
        started = time.monotonic()
        server = [str(bindir / "postgres"), "-D", str(data), "-k", str(sock), "-h", "127.0.0.1"]
        server += ["-p", str(ep["port"]), "-c", "max_connections=200"]
        # A throw-away cluster: durability buys nothing and costs fsyncs on a shared disk.
        server += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        self.launch("postgres", as_user(user, server), env, graceful="SIGINT", stop_phase=3)
        ready = [str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(ep["port"]), "-U", db_user]
        self.wait_ready("postgres", lambda: subprocess.run(ready).returncode == 0, 90, started)
        psql = [str(bindir / "psql"), "-v", "ON_ERROR_STOP=1", "-h", str(sock), "-p", str(ep["port"])]
        subprocess.run(
            [*psql, "-U", db_user, "-d", "postgres", "-c", f'CREATE DATABASE "{db}"'],
            check=True,
            capture_output=True,
        )

    def start_s3(self) -> None:
        ep = self.info["endpoints"]["s3"]
        started = time.monotonic()
        server = [str(VENV_BIN / "python"), str(TESTS / "support" / "s3_server.py")]
        self.launch("s3", [*server, "--port", str(ep["port"]), "--detached"], {})
        self.wait_ready("s3", lambda: procs.http_get(ep["url"] + "/moto-api/")[0] == 200, 90, started)
        import boto3

        # What minio-init does for MinIO: the lakehouse bucket.
        boto3.client(
            "s3",
            endpoint_url=ep["url"],
            aws_access_key_id=self.settings["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.settings["AWS_SECRET_ACCESS_KEY"],
            region_name=self.settings.get("AWS_REGION") or "us-east-1",
        ).create_bucket(Bucket=self.settings["LAKEHOUSE_BUCKET"])

    def start_smtp(self) -> None:
        ep = self.info["endpoints"]["smtp"]
        started = time.monotonic()
        if ep["kind"] == "mailpit":
            # compose's Mailpit, with compose's settings (MP_MAX_MESSAGES...).
            env = self.compose_env("mailpit")
            # The version of compose's image, built from its Go module.
            binary = ensure_mailpit(self.compose["services"]["mailpit"]["image"].rsplit(":", 1)[1])
            argv = [
                str(binary),
                "--listen",
                f"127.0.0.1:{ep['http_port']}",
                "--smtp",
                f"127.0.0.1:{ep['port']}",
            ]
            argv += ["--database", str(self.base / "mailpit.db"), "--disable-version-check"]
            self.launch("smtp", argv, env)
            self.wait_ready("smtp", lambda: procs.http_get(ep["http"] + "/readyz")[0] == 200, 60, started)
            return
        self._receiver("smtp", ep, started)

    def start_slack(self) -> None:
        self._receiver("slack", self.info["endpoints"]["slack"], time.monotonic())

    def _receiver(self, kind: str, ep: dict, started: float) -> None:
        argv = [str(VENV_BIN / "python"), "-m", "support.receivers", kind, "--port", str(ep["port"])]
        self.launch(kind, [*argv, "--out", ep["records"]], {"PYTHONPATH": str(TESTS)})

        def listening() -> bool:
            with contextlib.closing(socket.create_connection(("127.0.0.1", ep["port"]), 1)):
                return True

        self.wait_ready(kind, listening, 60, started)

    def spark_env(self) -> dict[str, str]:
        return {
            "JAVA_HOME": java_home(),
            "SPARK_HOME": str(pyspark_home()),
            "SPARK_LOCAL_IP": "127.0.0.1",
            # Executors' scratch space (the jars they fetch): in the stack's folder, not in /tmp.
            "SPARK_LOCAL_DIRS": str(self.base / "spark" / "local"),
            "SPARK_DAEMON_MEMORY": "512m",
            # The master's REST submission server (cluster deploy mode, not used by Python jobs)
            # would take the fixed port 6066.
            "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
        }

    def start_spark(self) -> None:
        ep = self.info["endpoints"]["spark"]
        spark_class = str(pyspark_home() / "bin" / "spark-class")
        master = self.compose["services"]["spark-master"]["command"]
        options = {"--host": "127.0.0.1", "--port": str(ep["port"]), "--webui-port": str(ep["ui_port"])}
        argv = [spark_class, *translate_command(master[1:], options, self.translation)]
        started = time.monotonic()
        self.launch("spark-master", argv, self.spark_env())
        master_json = ep["ui"] + "/json/"
        self.wait_ready(
            "spark-master",
            lambda: json.loads(procs.http_get(master_json)[1])["status"] == "ALIVE",
            120,
            started,
        )
        worker = self.compose["services"]["spark-worker"]["command"]
        # Executors inherit the worker's environment: compose gives them the lakehouse's.
        env = {**self.compose_env("spark-worker"), **self.spark_env()}
        for i, ui_port in enumerate(ep["worker_ui_ports"], start=1):
            work = self.base / "spark" / f"worker-{i}"
            work.mkdir(parents=True, exist_ok=True)
            args = translate_command(worker[1:], {"--webui-port": str(ui_port)}, self.translation)
            self.launch(
                f"spark-worker-{i}", [spark_class, *args, "--host", "127.0.0.1", "--work-dir", str(work)], env
            )

        def all_alive() -> bool:
            workers = json.loads(procs.http_get(master_json)[1])["workers"]
            return sum(w["state"] == "ALIVE" for w in workers) >= len(ep["worker_ui_ports"])

        names = [f"spark-worker-{i}" for i in range(1, len(ep["worker_ui_ports"]) + 1)]
        procs.wait_until(all_alive, 180, "spark workers", alive=lambda: all(self.alive(n) for n in names))
        for name in names:
            self.procs[name].ready_s = round(time.monotonic() - started, 1)
        self.save()

    def start_replay(self, *extra: str) -> None:
        """compose's silver-replay (its command and environment), with `extra` arguments."""
        command = self.compose["services"]["silver-replay"]["command"]
        if command[:1] != ["python"]:
            raise RuntimeError(f"silver-replay's command is {command}: the native stack runs `python ...`")
        argv = [str(VENV_BIN / "python"), *translate_command(command[1:], {}, self.translation), *extra]
        self.launch("silver-replay", argv, self.compose_env("silver-replay"))
