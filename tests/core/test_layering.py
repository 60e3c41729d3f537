"""The package's layering, as its folders state it: each module imported alone, in a fresh
interpreter, loads none of the runtimes its layer must not need. The DAG processor imports
flight_gold.airflow.* for every DAG file it parses; pyspark there would cost every parse a second."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import flight_gold

PACKAGE = Path(flight_gold.__file__).parent
RUNTIMES = ("pyspark", "py4j", "airflow", "deltalake", "fastapi")

# Layer -> runtimes its modules must not load when imported. What a module needs at call time it
# imports inside the function (deltalake in lake/, Airflow's models in a task).
FORBIDDEN = {
    "core": set(RUNTIMES),
    "lake": {"pyspark", "py4j", "airflow", "fastapi"},
    "alerting": {"pyspark", "py4j", "airflow", "fastapi"},
    "supervision": {"pyspark", "py4j", "airflow", "fastapi"},
    "feed": {"pyspark", "py4j", "airflow", "fastapi"},
    "airflow": {"pyspark", "py4j"},
    "dashboard": {"pyspark", "py4j"},
}


def modules(layer: str) -> list[str]:
    return [f"flight_gold.{layer}.{m.name}" for m in pkgutil.iter_modules([str(PACKAGE / layer)])] + [
        f"flight_gold.{layer}"
    ]


PROBE = """
import importlib, json, sys
loaded = {}
for name in sys.argv[1:]:
    before = set(sys.modules)
    importlib.import_module(name)
    loaded[name] = sorted({m.split(".")[0] for m in set(sys.modules) - before} & set(%r))
print(json.dumps(loaded))
"""


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_each_module_loads_only_the_runtimes_of_its_layer(layer):
    # One interpreter per layer: its modules share what they must not load, and the module that
    # loads a runtime first is the one named.
    out = subprocess.run(
        [sys.executable, "-c", PROBE % (RUNTIMES,), *modules(layer)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = json.loads(out.strip().splitlines()[-1])
    wrong = {name: sorted(set(got) & FORBIDDEN[layer]) for name, got in found.items()}
    assert {name: got for name, got in wrong.items() if got} == {}
