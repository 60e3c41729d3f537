"""Exit codes of the jobs and the one-line form of an error, shared by the jobs (which return
them), the Airflow tasks (which act on them) and the tests."""

from __future__ import annotations

import re

# The streaming job (jobs/streaming_gold.py).
EXIT_OK = 0
EXIT_QUERY_FAILED = 1  # a query failed: a retry resumes from the checkpoint
EXIT_BAD_INPUT = 2  # bad input or configuration: nothing written, a retry fails the same way
EXIT_CHECKPOINT_IN_USE = 3  # another instance holds the checkpoint
# The maintenance job (jobs/maintenance.py) also uses EXIT_OK and EXIT_BAD_INPUT.
EXIT_TABLE_FAILED = 1
EXIT_ALL_MISSING = 99

# delta-rs colours its error chains for a terminal; Airflow's task log shows them verbatim.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Py4J's wrapper line, which says nothing about the cause.
_PY4J_PREFIX = "An error occurred while calling"


def one_line(exc: BaseException | str, limit: int = 500, chain: bool = False) -> str:
    """One line of an error, cut to `limit` characters, Py4J's wrapper line and ANSI colours
    left out: its first meaningful line, or with `chain` all of them joined by ' / ' (delta-rs
    writes its causes one per line, the last one saying why)."""
    text = _ANSI.sub("", str(exc)).strip()
    lines = [line.strip().lstrip("\u21b3").strip() for line in text.splitlines()]
    meaningful = [line for line in lines if line and not line.startswith(_PY4J_PREFIX)]
    line = " / ".join(meaningful) if chain else (meaningful or lines or [""])[0].lstrip(": ")
    if not line:
        line = type(exc).__name__ if isinstance(exc, BaseException) else "unknown error"
    return line if len(line) <= limit else line[: limit - 3] + "..."


def cause_chain(exc: BaseException | None, limit: int = 20) -> list[str]:
    """The messages of an exception and of its causes (PySpark keeps the JVM's causes in
    `_cause`): the top message of a failed write says which file, the innermost one says why."""
    texts = []
    while exc is not None and len(texts) < limit:
        texts.append(str(getattr(exc, "_desc", None) or exc))
        exc = getattr(exc, "_cause", None) or exc.__cause__
    return texts
