# The matching engine: `docker compose up --build` runs it beside Kafka and PostgreSQL.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the package needs (no .venv, .kafka or .data from a developer's checkout);
# README.md* because pyproject names a readme that may not exist yet.
WORKDIR /src
COPY pyproject.toml README.md* ./
COPY matcher ./matcher
COPY schemas ./schemas
COPY events ./events
RUN pip install . \
    && rm -rf /src \
    && useradd --create-home --uid 10001 --user-group matcher \
    && install -d -o matcher -g matcher /var/lib/matcher

USER matcher
WORKDIR /home/matcher
# The SQLite file (when no database URL is given) and the rebalance reports go here: a
# folder the service's user owns, to mount as a volume.
ENV MATCHER_HTTP_HOST=0.0.0.0 \
    MATCHER_HTTP_PORT=8080 \
    MATCHER_DATA_DIR=/var/lib/matcher
VOLUME /var/lib/matcher
EXPOSE 8080

HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=6 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://localhost:8080/health', timeout=3)"]

CMD ["matcher", "run"]
