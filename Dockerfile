# syntax=docker/dockerfile:1
# Images of docker-compose.yaml, built from this repository:
#   target "airflow"        apache/airflow with airflow-provider-linkai[s3,gcs,analytics,audio]
#   target "linkai-server"  the same plus the [server] extra: the local LinkAI endpoint (offline
#                           Whisper recognizer) and espeak-ng, which speaks the stack's sample audio
# Build one by hand: docker build --target airflow -t airflow-provider-linkai:local .
ARG AIRFLOW_VERSION=3.3.2

FROM apache/airflow:${AIRFLOW_VERSION} AS airflow
ARG AIRFLOW_VERSION
COPY --chown=airflow:0 pyproject.toml README.md /opt/linkai/
COPY --chown=airflow:0 linkai_provider /opt/linkai/linkai_provider
# Airflow is pinned on the same command line so that resolving the extras can never move it.
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" "/opt/linkai[s3,gcs,analytics,audio]"

FROM airflow AS linkai-server
ARG AIRFLOW_VERSION
USER root
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends espeak-ng \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*
USER airflow
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" "/opt/linkai[server]"
EXPOSE 8765
ENTRYPOINT ["linkai-server"]
CMD ["--host", "0.0.0.0", "--port", "8765", "--engine", "whisper"]
