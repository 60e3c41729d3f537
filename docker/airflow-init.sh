#!/usr/bin/env bash
# One-shot set-up of the stack's Airflow, run by the `airflow-init` service after the image's
# entrypoint has migrated the database and created the admin user (_AIRFLOW_DB_MIGRATE,
# _AIRFLOW_WWW_USER_CREATE): checks the migration really happened, then creates the connections
# the DAGs use. Everything comes from the environment (.env); nothing secret is written here.
set -euo pipefail

# The entrypoint ignores a failed migration ("airflow db migrate || true"); do not.
airflow db check-migrations --migration-wait-timeout 60

# Connections owned by the stack follow .env on every start: delete, then add.
replace_connection() {
    local conn_id="$1"; shift
    airflow connections delete "${conn_id}" >/dev/null 2>&1 || true
    airflow connections add "${conn_id}" "$@"
}

# spark-submit in client mode: the driver runs in the Airflow worker (the scheduler, with the
# LocalExecutor), the executors on the standalone cluster. The whole master URL goes in the host
# field (the provider then uses it as given: spark://host:port, k8s://https://..., yarn).
replace_connection "${SPARK_CONN_ID:-spark_default}" \
    --conn-type spark \
    --conn-host "${SPARK_MASTER_URL}" \
    --conn-extra "{\"deploy-mode\": \"${SPARK_DEPLOY_MODE:-client}\"}"

# Mailpit accepts plain SMTP without authentication; a real relay needs login, password and TLS.
replace_connection "${SMTP_CONN_ID:-smtp_alerts}" \
    --conn-type smtp \
    --conn-host "${SMTP_HOST}" \
    --conn-port "${SMTP_PORT}" \
    ${SMTP_USER:+--conn-login "${SMTP_USER}"} \
    ${SMTP_PASSWORD:+--conn-password "${SMTP_PASSWORD}"} \
    --conn-extra "{\"from_email\": \"${ALERT_EMAIL_FROM}\", \"disable_tls\": ${SMTP_DISABLE_TLS:-true}, \"disable_ssl\": true}"

# Slack: the webhook URL is the user's. From .env when given (and then kept in step with it);
# otherwise the connection is created once, empty, for the user to fill in the UI
# (Admin > Connections), and a URL typed there survives restarts.
slack_conn_id="${SLACK_CONN_ID:-slack_alerts}"
if [[ -n "${SLACK_WEBHOOK_URL:-}" ]]; then
    replace_connection "${slack_conn_id}" --conn-type slackwebhook --conn-password "${SLACK_WEBHOOK_URL}"
elif ! airflow connections get "${slack_conn_id}" >/dev/null 2>&1; then
    airflow connections add "${slack_conn_id}" --conn-type slackwebhook \
        --conn-description "Fill in the Slack incoming-webhook URL (password field)"
    echo "NOTE: Slack connection '${slack_conn_id}' has no webhook URL yet: set SLACK_WEBHOOK_URL in .env" \
         "or edit it in the UI (Admin > Connections)."
fi

echo "Airflow is initialised: connections $(airflow connections list --output plain | awk 'NR>1 {print $1}' | paste -sd, -)"
