#!/usr/bin/env bash
# Runs every test of Millrace. It does its own set-up, so it works on a fresh Debian machine
# with the .NET 10 SDK: it installs rabbitmq-server, postgresql, python3-pika and chromium with apt-get when
# missing, starts RabbitMQ on 127.0.0.1 only with a fresh virtual host for this run, a three-node RabbitMQ
# cluster on 127.0.0.1:5701-5703 (MILLRACE_CLUSTER), and a throw-away PostgreSQL on 127.0.0.1, and stops
# them (and epmd) at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

dotnet build Millrace.sln -c Release --nologo -v quiet

bash scripts/rabbitmq.sh start
# The cluster tests' three-node RabbitMQ cluster (127.0.0.1:5701-5703) boots meanwhile.
cluster_log=$(mktemp)
bash scripts/rabbitmq.sh cluster start > "$cluster_log" 2>&1 &
cluster_pid=$!
# The interoperability test drives the broker from Python with a plain AMQP client.
if ! /usr/bin/python3 -c 'import pika' 2>/dev/null; then
  echo "test: installing python3-pika" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pika >/dev/null ||
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pika >/dev/null; }
fi
# The dashboard's browser tests drive Debian's headless Chromium through Playwright (its own browser download cannot work here).
if ! command -v chromium >/dev/null; then
  echo "test: installing chromium" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null ||
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
fi
export MILLRACE_CHROMIUM="$(command -v chromium)"
# One test reads the Millrace meter with dotnet-counters, as a user would (a local tool folder, not the user's).
if [[ ! -x .tools/dotnet-counters ]]; then
  dotnet tool install --tool-path .tools dotnet-counters --version 10.0.750501 >/dev/null
fi
export MILLRACE_DOTNET_COUNTERS="$PWD/.tools/dotnet-counters"
vhost="millrace-test-$$-$(date +%s)"
MILLRACE_PG_DIR=""
cleanup() {
  timeout 60 rabbitmqctl delete_vhost "$vhost" >/dev/null 2>&1 || true
  wait "$cluster_pid" 2>/dev/null || true
  bash scripts/rabbitmq.sh cluster stop || true
  bash scripts/rabbitmq.sh stop
  if [[ -n "$MILLRACE_PG_DIR" ]]; then bash scripts/postgres.sh stop "$MILLRACE_PG_DIR"; fi
}
trap cleanup EXIT
# The table sink's tests use a real PostgreSQL: installed when missing, a throw-away cluster on 127.0.0.1.
pg_env=$(bash scripts/postgres.sh start)
eval "$pg_env"
timeout 120 rabbitmqctl add_vhost "$vhost" >/dev/null
timeout 120 rabbitmqctl set_permissions -p "$vhost" guest ".*" ".*" ".*" >/dev/null
export MILLRACE_BROKER="amqp://guest:guest@127.0.0.1:5672/$vhost"
if ! wait "$cluster_pid"; then
  echo "test: the RabbitMQ cluster did not start:" >&2
  cat "$cluster_log" >&2
  exit 1
fi
export MILLRACE_CLUSTER="$(tail -n 1 "$cluster_log")"

# Nothing hangs: a test that runs for more than 10 minutes is stopped (and named), and the whole run
# is bounded, so that a stuck run fails with its output instead of running out CI's time.
timeout --kill-after=60 75m dotnet test Millrace.sln -c Release --no-build --nologo \
  --blame-hang-timeout 10m --blame-hang-dump-type none "$@"
