# cendis-scan in a container: `docker run --rm -v "$PWD:/src" cendis-scan scan /src`
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY scanner ./scanner
COPY rules ./rules
RUN pip install --no-cache-dir . && useradd --create-home scanner
USER scanner
WORKDIR /src
ENTRYPOINT ["cendis-scan"]
CMD ["scan", "."]
