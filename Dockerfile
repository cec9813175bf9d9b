# cendis-scan in a container. One image, two uses:
#   scan:    docker run --rm -v "$PWD:/src" cendis-scan scan /src
#   receive: docker run -d -p 8080:8080 -v cendis-data:/data -e CENDIS_TOKEN \
#              cendis-scan serve --host 0.0.0.0
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY scanner ./scanner
COPY rules ./rules
RUN pip install --no-cache-dir . && useradd --create-home scanner \
    && mkdir /data && chown scanner:scanner /data
# A repository bind-mounted at /src (or anywhere) is owned by the host's user, not by
# `scanner`, and git refuses such a repository ("dubious ownership"). That check guards a
# shared machine against running another user's repository config; in this container
# the only repositories are the ones its user mounted to be scanned, so git trusts them.
RUN git config --system --add safe.directory '*'
USER scanner
# The incident database (and the partner-key cache inside it) lives on a volume, so a new
# container picks up the queue and the keys where the old one stopped.
ENV CENDIS_SCAN_DB=/data/cendis-incidents.db
VOLUME /data
EXPOSE 8080
# Liveness of `serve` (a `scan` container exits long before the first check).
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"
WORKDIR /src
ENTRYPOINT ["cendis-scan"]
CMD ["scan", "."]
