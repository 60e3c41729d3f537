#!/usr/bin/env bash
# docker-compose.yaml's topology without Docker: PostgreSQL, S3 (moto), SMTP and Slack receivers,
# a Spark standalone cluster (master + 2 workers), Airflow (api-server, scheduler, dag-processor,
# triggerer; LocalExecutor) and the Silver_ML replay, as processes on 127.0.0.1 on free ports.
#
#   scripts/stack_local.sh start [--smtp mailpit] [--no-replay] [--set KEY=VALUE ...] [--keep]
#   scripts/stack_local.sh status
#   scripts/stack_local.sh stop
#   scripts/stack_local.sh leftovers     # every process carrying a stack marker
#
# The same code as the production-stack test (tests/support/stack); see its docstring.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ -x "$REPO/.venv/bin/python" ]] || { echo "stack_local: $REPO/.venv not found: run 'make venv' first" >&2; exit 1; }
cd "$REPO"
PYTHONPATH="$REPO/tests${PYTHONPATH:+:$PYTHONPATH}" exec "$REPO/.venv/bin/python" -m support.stack "$@"
