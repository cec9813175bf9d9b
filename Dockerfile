# cendis-scan in a container. One image, two uses:
#   scan:    docker run --rm -v "$PWD:/src" cendis-scan scan /src
#   receive: docker run -d -p 8080:8080 -v cendis-data:/data -e CENDIS_TOKEN \
#              cendis-scan serve --host 0.0.0.0
# Kubernetes manifests for the receiver and the sweeps: deploy/kubernetes/.
#
# The base is pinned by tag (Python 3.11 on Debian 12): the machines this was written on
# reach no registry, so no digest could be read. Pin it by digest where you build
# (FROM python:3.11-slim-bookworm@sha256:...).
FROM python:3.11-slim-bookworm

# git: the scanner's `git` and `sweep` commands run it. Its version follows the Debian
# release that the base tag pins, security updates included: an exact `git=<version>`
# pin breaks the build each time Debian replaces that package on its mirrors.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*

# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can check it and the manifests'
# runAsUser/fsGroup (deploy/kubernetes) name the same user.
RUN groupadd --system --gid 10001 scanner \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/scanner scanner \
    && mkdir /data && chown 10001:10001 /data

# A repository bind-mounted at /src (or anywhere) is owned by the host's user, not by
# `scanner`, and git refuses such a repository ("dubious ownership"). That check guards a
# shared machine against running another user's repository config; in this container
# the only repositories are the ones its user mounted to be scanned, so git trusts them.
RUN git config --system --add safe.directory '*'

WORKDIR /app
COPY pyproject.toml README.md ./
COPY deploy/constraints.txt ./deploy/
COPY scanner ./scanner
COPY rules ./rules
# Every runtime dependency pinned to the versions resolved in deploy/constraints.txt.
RUN pip install --no-cache-dir -c deploy/constraints.txt .

USER 10001:10001
# The incident database (and the partner-key cache inside it) lives on a volume, so a new
# container picks up the queue and the keys where the old one stopped.
ENV CENDIS_SCAN_DB=/data/cendis-incidents.db
VOLUME /data
EXPOSE 8080
# Liveness of `serve` (a `scan` container exits long before the first check).
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
WORKDIR /src
ENTRYPOINT ["cendis-scan"]
CMD ["scan", "."]
