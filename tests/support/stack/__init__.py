"""docker-compose.yaml's topology as native processes on 127.0.0.1, for the production-stack test
(tests/e2e/test_production_stack.py) and for developers without Docker
(scripts/stack_local.sh start|status|stop, which runs `python -m support.stack`).

    postgres          Debian's PostgreSQL: a fresh cluster in the stack's folder (compose: postgres)
    s3                moto's S3 server, outages on demand (compose: minio + minio-init)
    smtp, slack       the tests' SMTP and Slack-webhook receivers, or Mailpit (compose: mailpit)
    spark-master, spark-worker-N   pyspark's own standalone cluster (compose: spark-master, spark-worker)
    airflow-*         db migrate + docker/airflow-init.sh, then api-server, scheduler, dag-processor,
                      triggerer on PostgreSQL with the LocalExecutor (compose: airflow-*)
    silver-replay     the Silver_ML replay (compose: silver-replay)

Every setting comes from docker-compose.yaml rendered by Compose v2 with a generated .env
(support.stack.compose): a variable the native stack cannot apply stops it. Every process runs in
a session of its own and carries FLIGHT_GOLD_STACK_ID; stop() ends them all and reports anything
left. Python: ``stack = Stack(); stack.start(StackConfig()); ...; stack.stop()``.
"""

from support.stack.compose import DriftError
from support.stack.native import DEFAULT_SETTINGS, DEFAULT_STATE, Stack, StackConfig

__all__ = ["DEFAULT_SETTINGS", "DEFAULT_STATE", "DriftError", "Stack", "StackConfig"]
