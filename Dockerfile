# Image for the haltwatch worker and connectors (docker-compose.yml builds it once as haltwatch:local).
#   docker build -t haltwatch:local .
#   docker run --rm haltwatch:local worker            # = `haltwatch worker`
#   docker run --rm haltwatch:local connect --chain ethereum
# Every dependency ships a manylinux wheel for CPython 3.11, so the slim image needs no compiler.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY . .
RUN pip install . \
    && rm -rf /src/build

# Unprivileged user; /var/lib/haltwatch holds checkpoints and worker state (a volume in compose).
RUN useradd --system --create-home --uid 10001 haltwatch \
    && mkdir -p /var/lib/haltwatch /etc/haltwatch/labels \
    && chown haltwatch /var/lib/haltwatch
USER haltwatch
WORKDIR /var/lib/haltwatch

ENTRYPOINT ["haltwatch"]
CMD ["--help"]
