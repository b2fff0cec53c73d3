# syntax=docker/dockerfile:1
#
# currents-consumer image: a virtualenv with the wheel and its dependencies on python:3.11-slim.
#
#   docker build -t currents-consumer:0.1.0 .
#   docker run --rm --read-only --tmpfs /tmp -e AMPLITUDE_API_KEY=... currents-consumer:0.1.0 config
#
# scripts/check_dockerfile.sh lints this file and repeats its install steps without Docker.
# The base tag is pinned to a patch release; pin the digest too (@sha256:...) when you publish, and let
# Renovate/Dependabot move both.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the wheel is built from (hatchling reads README.md for the long description). The dev kit
# (devkit/: simulator, synthetic data, embedded broker, demo) is a distribution of its own and stays out
# of the image, which runs the product only; `currents-consumer demo` here says how to get the dev kit.
COPY pyproject.toml README.md requirements.lock ./
COPY consumer/ consumer/
# The venv gets no pip of its own: the builder's pip installs into it (--python), so the runtime image
# carries no installer. pip byte-compiles here, so nothing needs to write .pyc files at run time.
# The dependencies come from requirements.lock (scripts/lock.sh: uv, from pyproject.toml's ranges and
# the s3, gcs and azure extras), every file checked against its hash, so two builds install the same
# bytes; then the wheel just built, without resolving anything again.
RUN pip wheel --no-deps . -w /dist \
    && python -m venv --without-pip /opt/venv \
    && pip --python /opt/venv/bin/python install --no-cache-dir --require-hashes --no-deps \
        -r requirements.lock \
    && pip --python /opt/venv/bin/python install --no-cache-dir --no-deps /dist/*.whl

FROM ${PYTHON_IMAGE} AS runtime
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="currents-consumer" \
      org.opencontainers.image.description="Braze Currents to Amplitude: Kafka daemon, Avro replay" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/${PYTHON_IMAGE}"
# The program's own defaults are paths relative to the working directory and no metrics server; in
# the image, the service's locations and port (the Kubernetes manifests set the same values).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CURRENTS_DEAD_LETTER=/var/lib/currents-consumer/dead-letter \
    CURRENTS_STATE_DIR=/var/lib/currents-consumer/state \
    CURRENTS_METRICS_PORT=9400
# A fixed numeric uid/gid so Kubernetes can verify runAsNonRoot without reading /etc/passwd. The data
# directories exist and belong to it so that a plain `docker run` works; in Kubernetes volumes are
# mounted over them and the root filesystem is read-only.
RUN groupadd --system --gid 10001 currents \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin currents \
    && install -d -o 10001 -g 10001 -m 0750 \
        /var/lib/currents-consumer/dead-letter /var/lib/currents-consumer/state
COPY --from=builder /opt/venv /opt/venv
USER 10001:10001
WORKDIR /var/lib/currents-consumer
EXPOSE 9400
ENTRYPOINT ["currents-consumer"]
CMD ["run"]
