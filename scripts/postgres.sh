#!/usr/bin/env bash
# Starts or stops a throw-away PostgreSQL for tests, on 127.0.0.1 only, in a temporary folder:
#   eval "$(bash scripts/postgres.sh start)"   installs postgresql with apt-get when missing, initialises a
#                                              cluster in a new temporary folder, starts it, and prints
#                                              export MILLRACE_POSTGRES=... and MILLRACE_PG_DIR=...
#   bash scripts/postgres.sh stop DIR          stops that cluster and removes its folder
set -euo pipefail
port="${MILLRACE_PG_PORT:-55432}"

bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  [[ -n "$dir" && -x "$dir/initdb" ]] && echo "$dir"
}
as_postgres() { runuser -u postgres -- "$@"; }

case "${1:-}" in
  start)
    if [[ -z "$(bin)" ]]; then
      echo "postgres: installing postgresql" >&2
      DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
      # The package may start a cluster of its own; ours runs in a temporary folder.
      if command -v pg_lsclusters >/dev/null; then
        pg_lsclusters -h 2>/dev/null | while read -r version name _; do pg_ctlcluster "$version" "$name" stop >/dev/null 2>&1 || true; done
      fi
    fi
    b=$(bin)
    dir=$(mktemp -d /tmp/millrace-pg.XXXXXX)
    chown postgres:postgres "$dir"
    as_postgres "$b/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
    as_postgres "$b/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off" start >/dev/null
    echo "export MILLRACE_PG_DIR='$dir'"
    echo "export MILLRACE_POSTGRES='Host=127.0.0.1;Port=$port;Username=postgres;Database=postgres'"
    echo "postgres: listening on 127.0.0.1:$port (data in $dir)" >&2
    ;;
  stop)
    dir="${2:?usage: bash scripts/postgres.sh stop DIR}"
    b=$(bin)
    as_postgres "$b/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
  *)
    echo "usage: eval \"\$(bash scripts/postgres.sh start)\" ; bash scripts/postgres.sh stop DIR" >&2
    exit 2
    ;;
esac
