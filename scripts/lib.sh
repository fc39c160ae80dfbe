# Shared set-up steps of scripts/demo, scripts/test and .ci/run. Source it; do not run it.
# Every step is idempotent: a second run finds things in place and moves on.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PG_PORT="${MATCHER_PG_PORT:-55432}"
# Outside the checkout: the postgres user must reach it whatever the checkout's permissions.
PG_DIR="${MATCHER_PG_DIR:-/tmp/matcher-postgres-$PG_PORT}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

ensure_python() {
  # The virtualenv with the project and its test tools, installed editable.
  if [ ! -x "$VENV/bin/python" ]; then
    say "Creating the virtualenv in .venv"
    python3 -m venv "$VENV"
  fi
  if ! "$VENV/bin/python" -c "import matcher, faststream, ortools, pytest" 2>/dev/null \
      || [ "$ROOT/pyproject.toml" -nt "$VENV/.installed" ]; then
    say "Installing the project and its dependencies (pip)"
    "$VENV/bin/pip" install --disable-pip-version-check -q --upgrade pip
    "$VENV/bin/pip" install --disable-pip-version-check --progress-bar on -e "$ROOT[test]"
    touch "$VENV/.installed"
  fi
}

ensure_java() {
  # The local broker runs in its own JVM, resolved from Maven Central with mvn.
  if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      say "Installing Java and Maven (Debian packages)"
      apt-get update -q && apt-get install -y -q default-jre-headless maven
    else
      echo "Java 17+ and Maven are needed for the local Kafka broker; install them first." >&2
      return 1
    fi
  fi
}

ensure_kafka() {
  # A real Apache Kafka broker: the one named by KAFKA_BOOTSTRAP_SERVERS, else our local one.
  if [ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
    say "Using the Kafka broker at $KAFKA_BOOTSTRAP_SERVERS"
    return 0
  fi
  ensure_java
  say "Starting the local Kafka broker (matcher kafka up)"
  "$VENV/bin/matcher" kafka up
  export KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:${MATCHER_KAFKA_PORT:-19092}"
  # The broker runs with SASL/SCRAM and ACLs: tests act as the admin principal, which may
  # use the random topic prefixes they isolate themselves with (security tests grant less).
  export MATCHER_KAFKA_CLIENT_CONFIG="${MATCHER_KAFKA_HOME:-$ROOT/.kafka}/client-admin.properties"
}

pg_bin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

ensure_postgres() {
  # A throw-away PostgreSQL cluster on loopback for the tests of the PostgreSQL path.
  if [ -n "${MATCHER_TEST_POSTGRES_URL:-}" ]; then
    return 0
  fi
  local bin
  bin="$(pg_bin)"
  if [ -z "$bin" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      say "Installing PostgreSQL (Debian packages)"
      apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql
      bin="$(pg_bin)"
    else
      say "PostgreSQL is not installed: its tests will be skipped (CI installs it)"
      return 0
    fi
  fi
  local run_as=()
  if [ "$(id -u)" = 0 ]; then run_as=(runuser -u postgres --); fi
  mkdir -p "$PG_DIR"
  [ "$(id -u)" = 0 ] && chown -R postgres "$PG_DIR"
  if [ ! -f "$PG_DIR/PG_VERSION" ]; then
    say "Creating a PostgreSQL cluster in $PG_DIR"
    "${run_as[@]}" "$bin/initdb" -D "$PG_DIR" -U matcher --auth=trust -E UTF8 >/dev/null
  fi
  if ! "$bin/pg_isready" -h 127.0.0.1 -p "$PG_PORT" -q; then
    say "Starting PostgreSQL on 127.0.0.1:$PG_PORT"
    "${run_as[@]}" "$bin/pg_ctl" -D "$PG_DIR" -l "$PG_DIR/server.log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k /tmp -c fsync=off" start >/dev/null
  fi
  export MATCHER_TEST_POSTGRES_URL="postgresql+psycopg://matcher@127.0.0.1:$PG_PORT/postgres"
}

ensure_debian_tool() {
  # ensure_debian_tool COMMAND PACKAGE PURPOSE: install a Debian package when its command is
  # missing (as root with apt-get), else say what will fail without it.
  local command="$1" package="$2" purpose="$3"
  if command -v "$command" >/dev/null; then
    return 0
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "Installing $package (Debian package) for $purpose"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$package"
  else
    say "$package is not installed: $purpose will fail (apt-get install $package)"
  fi
}

ensure_kcat() {
  # kcat runs the partner guide's examples as a partner would.
  ensure_debian_tool kcat kcat "the partner guide's examples"
}

ensure_chromium() {
  # Debian's headless Chromium for the browser tests (Playwright's own download is not used).
  ensure_debian_tool chromium chromium "the browser tests"
}
