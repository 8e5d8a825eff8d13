# syntax=docker/dockerfile:1
# Ballast: one image, three commands: `ballast run` (the operator, the default),
# `ballast gateway` (the OpenAI-compatible gateway) and `ballast fetch` (the model cache's
# loader Job; the `cache` extra brings huggingface_hub). Build: `docker build -t ballast .`

# The base, pinned by exact version (append @sha256:<digest> to pin the bytes too).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- builder: build the wheel and install it with its dependencies into a venv ---
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# A venv without pip: nothing in the final image can install packages.
RUN python -m venv --without-pip /opt/ballast
COPY pyproject.toml README.md ./
COPY operator/ ./operator/
# Bytecode is compiled at install time, so a read-only root filesystem costs nothing at start.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m pip --python /opt/ballast/bin/python install --compile "$(ls /wheels/ballast-*.whl)[fast,cache]" \
 && /opt/ballast/bin/ballast --version

# --- final: the venv on the same slim base, no build tools, no caches, non-root ---
FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="ballast" \
      org.opencontainers.image.description="Kubernetes operator and OpenAI-compatible gateway that keeps LLM services upright" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/ballast-dev/ballast" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.14-slim-bookworm"
ENV PATH=/opt/ballast/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=builder /opt/ballast /opt/ballast
# 65532: the conventional "nonroot" UID/GID; numeric so runAsNonRoot can be verified.
USER 65532:65532
# operator metrics 9090, kopf liveness 8081, gateway 8080
EXPOSE 8080 8081 9090
ENTRYPOINT ["ballast"]
CMD ["run"]
