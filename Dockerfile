# streamrec images, one Dockerfile, two targets:
#   docker build --target serve   -t streamrec:local .          # ingest, score, producers, CLI; no torch
#   docker build --target trainer -t streamrec-trainer:local .  # + torch (CPU), onnx: `streamrec train`
# A plain `docker build .` builds `serve` (the last stage).
#
# Base: an exact Python patch release on Debian 12, not a floating `3.11-slim`. Not pinned by
# digest: no digest could be verified from here (no registry access; third-party files quote
# different digests for the same tag, because the tag is rebuilt for Debian security fixes).
# To freeze it completely: `docker buildx imagetools inspect python:3.11.16-slim-bookworm`
# and append `@sha256:<index digest>`.
FROM python:3.11.16-slim-bookworm AS base

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# A numeric, non-root identity (10001:10001), so Kubernetes' runAsNonRoot can check it
# without reading /etc/passwd; no home, no login shell. /models is the model store mount
# point, owned by it so a fresh named volume is writable by the trainer.
RUN groupadd --system --gid 10001 streamrec \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin streamrec \
    && mkdir /models && chown 10001:10001 /models

# Dependencies first, from pyproject alone, so editing code does not re-download them:
# empty package folders let `pip install .` resolve and install the dependency set.
COPY pyproject.toml README.md LICENSE constraints.txt ./
RUN mkdir -p streamrec producers online_models consumers export

ENTRYPOINT ["streamrec"]

# ---------------------------------------------------------------------------------------
# The trainer: the train extra (torch, onnx, onnxscript) on top of serving. torch from the
# CPU wheel index (as `make demo` does on CPU machines): the CUDA wheels add ~3 GB for
# nothing on a CPU trainer. constraints.txt still pins torch's version (its `+cpu` local
# label matches the pin).
FROM base AS trainer
# Versions: every one pinned by `-c constraints.txt` (hadolint DL3013 is satisfied by it).
RUN pip install --no-cache-dir -c constraints.txt \
        --extra-index-url https://download.pytorch.org/whl/cpu ".[train]" \
    && pip uninstall -y streamrec
# .dockerignore lets only pyproject, README and the package folders into the context.
COPY . .
RUN pip install --no-cache-dir --no-deps . && rm -rf build ./*.egg-info
USER 10001:10001
ENV STREAMREC_METRICS_PORT=9100
EXPOSE 9100
CMD ["train", "--store", "/models"]

# ---------------------------------------------------------------------------------------
# Serving: the serve extra at the tested versions; the base install is the app SDK only.
FROM base AS serve
RUN pip install --no-cache-dir -c constraints.txt ".[serve]" \
    && pip uninstall -y streamrec
COPY . .
RUN pip install --no-cache-dir --no-deps . && rm -rf build ./*.egg-info
# Never run a network service as root.
USER 10001:10001
# /metrics, /healthz and /readyz (streamrec.metrics.MetricsServer).
ENV STREAMREC_METRICS_PORT=9100
EXPOSE 9100
CMD ["--help"]
