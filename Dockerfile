# streamrec serving image: ingest, score, producers and the CLI; no torch.
# The trainer (torch, onnx) gets its own image later, so serving stays small.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, from pyproject alone, so editing code does not re-download them:
# empty package folders let `pip install .` resolve and install the dependency set.
# The serve extra at the tested versions (constraints.txt): the base install is the app SDK only.
COPY pyproject.toml README.md LICENSE constraints.txt ./
RUN mkdir -p streamrec producers online_models consumers export \
    && pip install -c constraints.txt ".[serve]" \
    && pip uninstall -y streamrec

# .dockerignore lets only pyproject, README and the package folders into the context.
COPY . .
RUN pip install --no-deps . && rm -rf build *.egg-info

# Never run a network service as root.
RUN useradd --system --uid 10001 --no-create-home streamrec
USER streamrec

# /metrics, /healthz and /readyz (streamrec.metrics.MetricsServer).
ENV STREAMREC_METRICS_PORT=9100
EXPOSE 9100

ENTRYPOINT ["streamrec"]
CMD ["--help"]
