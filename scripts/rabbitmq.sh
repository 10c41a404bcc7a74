#!/usr/bin/env bash
# Starts or stops a RabbitMQ broker for tests and benchmarks, every port on loopback only:
#   bash scripts/rabbitmq.sh start    installs rabbitmq-server with apt-get when missing; waits for 5672
#   bash scripts/rabbitmq.sh stop     stops the broker and epmd
# The broker keeps its data in a folder of its own, emptied at every start (MILLRACE_RABBITMQ_DIR,
# default /tmp/millrace-rabbitmq): queues left by earlier runs on the machine (a broker recovering
# thousands of durable queues boots for minutes) never slow or break a run.
set -euo pipefail
export ERL_EPMD_ADDRESS=127.0.0.1
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"

data="${MILLRACE_RABBITMQ_DIR:-/tmp/millrace-rabbitmq}"
export RABBITMQ_MNESIA_BASE="$data/mnesia"
export RABBITMQ_LOG_BASE="$data/log"

up() { (echo > /dev/tcp/127.0.0.1/5672) 2>/dev/null; }
fresh() {
  rm -rf "$data"
  mkdir -p "$RABBITMQ_MNESIA_BASE" "$RABBITMQ_LOG_BASE"
  if id rabbitmq >/dev/null 2>&1; then chown -R rabbitmq:rabbitmq "$data"; fi
}

case "${1:-}" in
  start)
    if ! command -v rabbitmq-server >/dev/null; then
      echo "rabbitmq: installing rabbitmq-server" >&2
      DEBIAN_FRONTEND=noninteractive apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
      # The package may start a broker of its own (with systemd); use ours, on loopback.
      rabbitmqctl stop >/dev/null 2>&1 || true
    fi
    if up; then echo "rabbitmq: already listening on 127.0.0.1:5672" >&2; exit 0; fi
    # A slow or busy machine can take long to boot the Erlang node; a node that failed to boot is
    # stopped, its log shown, and started once more before we give up.
    # Each queue holds a file handle: a low limit (1024 on some machines) slows the broker down.
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    for attempt in 1 2; do
      fresh
      rabbitmq-server -detached || true
      for _ in $(seq 1 240); do
        if up; then echo "rabbitmq: listening on 127.0.0.1:5672" >&2; exit 0; fi
        sleep 0.5
      done
      echo "rabbitmq: the broker did not listen on 127.0.0.1:5672 within 120 s (attempt $attempt); its log:" >&2
      tail -n 40 "$RABBITMQ_LOG_BASE"/*.log >&2 2>/dev/null || true
      timeout 60 rabbitmqctl stop >/dev/null 2>&1 || true
      pkill -f beam.smp >/dev/null 2>&1 || true
      epmd -kill >/dev/null 2>&1 || true
      sleep 2
    done
    echo "rabbitmq: the broker did not start; see its log above" >&2
    exit 1
    ;;
  stop)
    timeout 60 rabbitmqctl stop >/dev/null 2>&1 || pkill -f beam.smp >/dev/null 2>&1 || true
    epmd -kill >/dev/null 2>&1 || true
    ;;
  *)
    echo "usage: bash scripts/rabbitmq.sh start|stop" >&2
    exit 2
    ;;
esac
