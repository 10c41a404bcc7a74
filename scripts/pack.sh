#!/usr/bin/env bash
# Packs Millrace's libraries (and the dotnet new template) as NuGet packages into a folder feed.
#   bash scripts/pack.sh [FOLDER]        default: artifacts/packages
# Then, in a project of your own:
#   dotnet add package Millrace --source /path/to/FOLDER
# The version is set in one place: Directory.Build.props (VersionPrefix); --version-suffix X adds a pre-release suffix.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(realpath -m "${1:-artifacts/packages}")"
mkdir -p "$out"
# Packs every packable project of the solution: the libraries of src/ and templates/ (the rest is IsPackable=false).
dotnet pack Millrace.sln -c Release -o "$out" --nologo -v quiet "${@:2}"
ls "$out"
