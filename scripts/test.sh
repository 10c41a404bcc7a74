#!/usr/bin/env bash
# Runs every test of Millrace. It does its own set-up, so it works on a fresh Debian machine
# with the .NET 10 SDK: later placements add their services here (installed when missing,
# started on 127.0.0.1, stopped at the end).
set -euo pipefail
cd "$(dirname "$0")/.."

dotnet build Millrace.sln -c Release --nologo -v quiet
dotnet test Millrace.sln -c Release --no-build --nologo "$@"
