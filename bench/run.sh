#!/usr/bin/env bash
# Millrace against its peers on the Tutorial workload, measured in one run.
#   bash bench/run.sh [--items N] [--python-items N] [--broker-items N] [--runs R] [--systems a,b,...] [--json FILE] [--quick] [--latency] [--replicas] [--uploads] [--parts] [--no-ready-to-run]
# --replicas also measures ordered replicas of a CPU-heavy map against one replica (bench/Replicas), and 1, 2, 4
#   programs replicating a CPU-heavy process in the broker placement, with a projection for N hosts.
# --parts also measures start-up (each system with one item) and the steady rate (a run 10x longer, its extra items
#   over its extra time) apart, for the systems that take --items.
# --uploads also measures files over HTTP into SQLite: Millrace.Web against a hand-written ASP.NET Core endpoint (bench/Uploads).
# Systems: millrace-threads, millrace-processes, millrace-threads-checkpoints, millrace-processes-checkpoints, millrace-broker, millrace-broker-batched, channels, dataflow, akka-streams, akka-streams-fused, channels-batched, ipc-pump,
#          rabbitmq-raw, rabbitmq-raw-batched (a RabbitMQ broker on 127.0.0.1 is started, and
#          installed when missing, for them), python-multiprocessing (the seed as written),
#          python-multiprocessing-quiet.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v python3 >/dev/null || { echo "bench: python3 is needed for the Python peer (apt-get install python3)" >&2; exit 1; }
dotnet build Millrace.sln -c Release --nologo -v quiet >&2
# Every .NET program the systems run (Millrace's example and the .NET peers alike) is measured as a user deploys it:
# published with ReadyToRun (compiled ahead, so that start-up does not wait for the JIT; docs/tuning.md). With
# --no-ready-to-run the plain build output runs instead.
if [[ " $* " != *" --no-ready-to-run "* ]]; then
  for project in examples/Tutorial bench/Peers bench/RabbitRaw; do
    name=$(basename "$project")
    dotnet publish "$project" -c Release -r linux-x64 --self-contained false -p:PublishReadyToRun=true \
      -o "bench/.published/$name" --nologo -v quiet >&2
  done
fi
systems=$(printf '%s\n' "$@" | grep -A1 -x -- '--systems' | tail -n 1 || true)
started_broker=no
if [[ -z "$systems" || "$systems" == *rabbitmq* || "$systems" == *broker* || " $* " == *" --latency "* || " $* " == *" --replicas "* ]] && ! (echo > /dev/tcp/127.0.0.1/5672) 2>/dev/null; then
  bash scripts/rabbitmq.sh start
  started_broker=yes
fi
status=0
dotnet bench/Millrace.Bench/bin/Release/net10.0/Millrace.Bench.dll "$@" || status=$?
if [[ $started_broker == yes ]]; then bash scripts/rabbitmq.sh stop; fi
exit $status
