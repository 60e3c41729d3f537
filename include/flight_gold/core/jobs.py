"""The project's Spark applications as their Airflow tasks see them: the name spark-submit gives
each, and the prefix of the one-line reason each prints to stderr before a non-zero exit, which
the task quotes. Both sides import these, so they live where neither pyspark nor Airflow is
needed (the DAG processor must not load pyspark to parse a DAG)."""

STREAMING_APP_NAME = "flight-gold-streaming"
STREAMING_ERROR_PREFIX = "streaming_gold:"

MAINTENANCE_APP_NAME = "flight-gold-maintenance"
MAINTENANCE_ERROR_PREFIX = "maintenance:"
