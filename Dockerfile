# syntax=docker/dockerfile:1
# Harmony Companion, the tool server. How to run it: docs/deploy.md.
# Written for users: this project's CI machine has no Docker engine, so this file is not built or run in CI.

# Optional extras, e.g. --build-arg EXTRAS='[otel]' to export traces over OTLP (docs/deploy.md).
ARG EXTRAS=""

# Build: a wheel for Companion and one for each of its runtime dependencies (no dev extras).
FROM python:3.11-slim AS build
ARG EXTRAS
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --disable-pip-version-check --wheel-dir /wheels ".${EXTRAS}"

# Runtime: those wheels installed, and nothing else from the source tree.
FROM python:3.11-slim
ARG EXTRAS
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    COMPANION_ENV=production \
    COMPANION_DATA_DIR=/data
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --disable-pip-version-check --root-user-action=ignore \
        --no-index --find-links=/wheels "harmony-companion${EXTRAS}"
RUN useradd --create-home --uid 10001 --user-group companion \
    && mkdir /data \
    && chown companion:companion /data
USER companion
WORKDIR /home/companion
# Recordings (uploads) live here; several replicas must share it (docs/deploy.md).
VOLUME ["/data"]
EXPOSE 8000
# /healthz answers 200 when the database answers, 503 otherwise; urlopen raises (exit 1) on both 503 and no answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
# `serve` migrates to the latest schema, then serves; run `companion db upgrade` as the release step first.
CMD ["companion", "serve", "--host", "0.0.0.0", "--port", "8000"]
