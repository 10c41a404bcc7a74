#!/usr/bin/env bash
# Millrace against its peers on the Tutorial workload, measured in one run.
#   bash bench/run.sh [--items N] [--python-items N] [--runs R] [--systems a,b,...] [--json FILE] [--quick] [--latency]
# Systems: millrace-threads, millrace-processes, channels, dataflow, channels-batched, ipc-pump,
#          python-multiprocessing (the seed as written), python-multiprocessing-quiet.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v python3 >/dev/null || { echo "bench: python3 is needed for the Python peer (apt-get install python3)" >&2; exit 1; }
dotnet build Millrace.sln -c Release --nologo -v quiet >&2
exec dotnet bench/Millrace.Bench/bin/Release/net10.0/Millrace.Bench.dll "$@"
