#!/usr/bin/env bash
# Starts or stops RabbitMQ for tests and benchmarks, every port on loopback (127.0.0.1) only.
#
# One broker node (the usual one, node rabbit@<hostname>):
#   bash scripts/rabbitmq.sh start    installs rabbitmq-server with apt-get when missing; waits for 5672
#   bash scripts/rabbitmq.sh stop     stops that broker, and epmd unless cluster nodes run (never them)
#   AMQP amqp://guest:guest@127.0.0.1:5672/, Erlang distribution 25672.
#   It keeps its data in a folder of its own, emptied at every start (MILLRACE_RABBITMQ_DIR,
#   default /tmp/millrace-rabbitmq): queues left by earlier runs on the machine (a broker recovering
#   thousands of durable queues boots for minutes) never slow or break a run.
#
# A three-node cluster, for quorum queues and fault tests; it runs alongside the single node:
#   bash scripts/rabbitmq.sh cluster start         (re)starts 3 fresh nodes, joins 2 and 3 to node 1,
#                                                  prints the AMQP addresses (25-40 s on 2 cores)
#   bash scripts/rabbitmq.sh cluster stop          stops the 3 nodes (exits 0 when none runs)
#   bash scripts/rabbitmq.sh cluster kill-node N   kill -9 node N (N = 1, 2 or 3), for fault tests
#   bash scripts/rabbitmq.sh cluster start-node N  starts node N again on its data; waits until it is
#                                                  back in the cluster
#   bash scripts/rabbitmq.sh cluster status        which nodes run (exit 0 when all 3 do, else 3)
#   node                 AMQP (guest/guest, vhost /)          Erlang distribution
#   millrace1@localhost  amqp://guest:guest@127.0.0.1:5701/   25701
#   millrace2@localhost  amqp://guest:guest@127.0.0.1:5702/   25702
#   millrace3@localhost  amqp://guest:guest@127.0.0.1:5703/   25703
#   No plugins (no management/prometheus ports). Data and logs under MILLRACE_RABBITMQ_CLUSTER_DIR
#   (default /tmp/millrace-rabbitmq-cluster)/nodeN/{mnesia,log}; `cluster start` empties them,
#   `cluster start-node` keeps them. Inspect with e.g.
#     rabbitmqctl -n millrace1@localhost cluster_status
#     rabbitmqctl -n millrace1@localhost list_queues name type members leader
#   Every node and rabbitmqctl use the rabbitmq user's Erlang cookie (/var/lib/rabbitmq/.erlang.cookie:
#   Debian's wrappers run them all as that user), shared with the single node. All nodes share epmd
#   (127.0.0.1:4369). A restarting node may wait (up to 5 minutes) for the peers that were running
#   when it went down before it listens: after `cluster stop` start node 1 first (it stops last);
#   after killing several nodes start them all (e.g. in parallel).
#   RabbitMQ 3.10 (Debian 12) registers a new quorum queue's replicas on disk lazily: kill every node
#   within about a second of declaring one and the queue comes back without a leader, unusable.
set -euo pipefail
export ERL_EPMD_ADDRESS=127.0.0.1
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
loopback_dist="-kernel inet_dist_use_interface {127,0,0,1}"
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="$loopback_dist"
# rabbitmqctl is an Erlang node too (ports 35672-35682 while it runs): loopback as well.
export RABBITMQ_CTL_ERL_ARGS="$loopback_dist"
# Cluster nodes carry this flag (an Erlang user flag, ignored by RabbitMQ) on their command line, so
# their processes can be told apart from the single node's: RabbitMQ sets the node name at run time.
cluster_flag="-millrace_cluster_node"

usage() {
  echo "usage: bash scripts/rabbitmq.sh start|stop" >&2
  echo "       bash scripts/rabbitmq.sh cluster start|stop|status|kill-node N|start-node N   (N = 1, 2, 3)" >&2
  echo "       (see the comment at the top of the script for ports and node names)" >&2
  exit 2
}

install_if_missing() {
  if ! command -v rabbitmq-server >/dev/null; then
    echo "rabbitmq: installing rabbitmq-server" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
    # The package may start a broker of its own (with systemd); use ours, on loopback.
    rabbitmqctl stop >/dev/null 2>&1 || true
  fi
}
# Each queue holds a file handle: a low limit (1024 on some machines) slows the broker down.
raise_file_limit() { ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true; }

# beam.smp processes of cluster nodes (all, or of node name $1) and of anything else.
cluster_beam_pids() {
  local pid args
  for pid in $(pgrep -x beam.smp || true); do
    args=" $(tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline" || true) "
    if [[ -n "${1:-}" ]]; then [[ "$args" == *" $cluster_flag $1 "* ]] && echo "$pid"
    else [[ "$args" == *" $cluster_flag "* ]] && echo "$pid"; fi
  done
  return 0
}
other_beam_pids() {
  local pid
  for pid in $(pgrep -x beam.smp || true); do
    [[ -r "/proc/$pid/cmdline" ]] || continue
    tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline" | grep -q -- " $cluster_flag " || echo "$pid"
  done
  return 0
}
descendants() {
  local child
  for child in $(pgrep -P "$1" || true); do echo "$child"; descendants "$child"; done
}

# ---------------------------------------------------------------------------------------------
# The single node.
single() {
  data="${MILLRACE_RABBITMQ_DIR:-/tmp/millrace-rabbitmq}"
  export RABBITMQ_MNESIA_BASE="$data/mnesia"
  export RABBITMQ_LOG_BASE="$data/log"
  up() { (echo > /dev/tcp/127.0.0.1/5672) 2>/dev/null; }
  fresh() {
    rm -rf "$data"
    mkdir -p "$RABBITMQ_MNESIA_BASE" "$RABBITMQ_LOG_BASE"
    if id rabbitmq >/dev/null 2>&1; then chown -R rabbitmq:rabbitmq "$data"; fi
  }
  # Kills the single node's Erlang VMs, never the cluster nodes'; epmd only when no cluster node runs.
  kill_single() {
    local pids
    pids=$(other_beam_pids)
    if [[ -n "$pids" ]]; then kill -9 $pids >/dev/null 2>&1 || true; fi
    if [[ -z "$(cluster_beam_pids)" ]]; then epmd -kill >/dev/null 2>&1 || true; fi
  }
  case "$1" in
    start)
      install_if_missing
      if up; then echo "rabbitmq: already listening on 127.0.0.1:5672" >&2; exit 0; fi
      # A slow or busy machine can take long to boot the Erlang node; a node that failed to boot is
      # stopped, its log shown, and started once more before we give up.
      raise_file_limit
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
        kill_single
        sleep 2
      done
      echo "rabbitmq: the broker did not start; see its log above" >&2
      exit 1
      ;;
    stop)
      if ! timeout 60 rabbitmqctl stop >/dev/null 2>&1; then
        local pids; pids=$(other_beam_pids)
        if [[ -n "$pids" ]]; then kill -9 $pids >/dev/null 2>&1 || true; fi
      fi
      if [[ -z "$(cluster_beam_pids)" ]]; then epmd -kill >/dev/null 2>&1 || true; fi
      ;;
  esac
}

# ---------------------------------------------------------------------------------------------
# The three-node cluster.
cluster_dir="${MILLRACE_RABBITMQ_CLUSTER_DIR:-/tmp/millrace-rabbitmq-cluster}"
nodes=(1 2 3)
node_name() { echo "millrace$1@localhost"; }
amqp_port() { echo $((5700 + $1)); }
dist_port() { echo $((25700 + $1)); }
node_dir() { echo "$cluster_dir/node$1"; }
listening() { (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
node_alive() { [[ -n "$(cluster_beam_pids "$(node_name "$1")")" ]]; }
say() { echo "rabbitmq cluster: $*" >&2; }

show_log() {
  local d; d=$(node_dir "$1")
  echo "---- $(node_name "$1") log tail ($d/log) ----" >&2
  tail -n 40 "$d"/log/*.log >&2 2>/dev/null || echo "(no log)" >&2
  echo "----" >&2
}
# rabbitmqctl against node $1 with a time limit of $2 seconds.
ctl() {
  local n=$1 t=$2; shift 2
  timeout --kill-after=10 "$t" rabbitmqctl -n "$(node_name "$n")" "$@"
}

# The cookie must exist before three nodes start at once (each would otherwise write its own).
ensure_cookie() {
  id rabbitmq >/dev/null 2>&1 || return 0
  local cookie; cookie="$(getent passwd rabbitmq | cut -d: -f6)/.erlang.cookie"
  [[ -f "$cookie" ]] && return 0
  (umask 077; tr -dc 'A-Z' < /dev/urandom | head -c 20 > "$cookie")
  chown rabbitmq:rabbitmq "$cookie"; chmod 400 "$cookie"
}

# Starts the Erlang VM of node $1 in the background on its data folder (emptied when $2 = fresh).
launch_node() {
  local n=$1 d; d=$(node_dir "$1")
  if [[ "${2:-}" == fresh ]]; then
    rm -rf "$d"
    mkdir -p "$d/mnesia" "$d/log"
    echo "[]." > "$d/enabled_plugins"
    if id rabbitmq >/dev/null 2>&1; then chown -R rabbitmq:rabbitmq "$d"; fi
  fi
  (
    export RABBITMQ_NODENAME; RABBITMQ_NODENAME=$(node_name "$n")
    export RABBITMQ_NODE_PORT; RABBITMQ_NODE_PORT=$(amqp_port "$n")
    export RABBITMQ_DIST_PORT; RABBITMQ_DIST_PORT=$(dist_port "$n")
    export RABBITMQ_MNESIA_BASE="$d/mnesia" RABBITMQ_LOG_BASE="$d/log"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins"
    export RABBITMQ_PID_FILE="$d/pid"
    export RABBITMQ_CONFIG_FILE="$d/rabbitmq"   # does not exist: no /etc/rabbitmq/rabbitmq.conf either
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="$loopback_dist $cluster_flag $RABBITMQ_NODENAME"
    rabbitmq-server -detached > "$d/log/startup.log" 2>&1 || true
  )
}

# Waits up to $2 s until node $1 listens on its AMQP port; fails early when its VM is gone.
wait_listen() {
  local n=$1 limit=$2 start=$SECONDS hinted=""
  while (( SECONDS - start < limit )); do
    listening "$(amqp_port "$n")" && return 0
    if [[ -z "$hinted" ]] && grep -qs 'Error while waiting for Mnesia tables' "$(node_dir "$n")"/log/*.log; then
      say "$(node_name "$n") waits for its peers before it listens (up to 5 minutes): start them too"
      hinted=yes
    fi
    if (( SECONDS - start > 15 )) && ! node_alive "$n"; then
      say "$(node_name "$n") exited before it listened on 127.0.0.1:$(amqp_port "$n")"
      return 1
    fi
    sleep 0.5
  done
  say "$(node_name "$n") did not listen on 127.0.0.1:$(amqp_port "$n") within $limit s"
  return 1
}

# Running nodes of the cluster as node $1 sees them, one per line.
running_nodes() {
  ctl "$1" 30 -q cluster_status --formatter json 2>/dev/null |
    grep -o '"running_nodes":\[[^]]*\]' | grep -o 'millrace[0-9]*@[A-Za-z0-9._-]*' || true
}
# Running nodes as any live node sees them.
running_nodes_any() {
  local n out
  for n in "$@"; do
    node_alive "$n" || continue
    out=$(running_nodes "$n")
    if [[ -n "$out" ]]; then echo "$out"; return 0; fi
  done
  return 0
}
# Waits up to $2 s until the cluster (as seen from node $1, then any node) runs all nodes in $3...
wait_running() {
  local first=$1 limit=$2 start=$SECONDS; shift 2
  local want=("$@") got missing n
  while (( SECONDS - start < limit )); do
    got=$(running_nodes_any "$first" "${nodes[@]}")
    missing=""
    for n in "${want[@]}"; do grep -qx "$(node_name "$n")" <<<"$got" || missing+=" $(node_name "$n")"; done
    [[ -z "$missing" ]] && return 0
    sleep 1
  done
  say "not running in cluster_status after $limit s:$missing (running: $(echo $got))"
  return 1
}

# Stops node $1: rabbitmqctl stop (60 s at most), then kill -9 of its VM and children if still alive.
stop_node() {
  local n=$1 i
  node_alive "$n" || return 0
  # A node still booting (not listening yet, e.g. waiting for its peers) would not stop soon.
  if listening "$(amqp_port "$n")"; then
    ctl "$n" 60 stop >/dev/null 2>&1 || true
    for i in $(seq 1 20); do node_alive "$n" || return 0; sleep 0.5; done
  fi
  kill_node "$n"
}
kill_node() {
  local n=$1 pids pid all="" i left
  pids=$(cluster_beam_pids "$(node_name "$n")")
  [[ -z "$pids" ]] && return 0
  for pid in $pids; do all+=" $pid $(descendants "$pid" | tr '\n' ' ')"; done
  kill -9 $all >/dev/null 2>&1 || true
  # SIGKILL is delivered asynchronously: wait until the VM and its children are gone (or zombies).
  for i in $(seq 1 40); do
    left=""
    for pid in $all; do
      [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo Z)" == Z ]] || left+=" $pid"
    done
    [[ -z "$left" ]] && return 0
    sleep 0.25
  done
  say "$(node_name "$n"): processes$left still alive 10 s after kill -9"
  return 1
}

cluster_stop() {
  local n pids=()
  # Node 1 stops last: a node restarted later waits for the nodes that were still running when it
  # stopped, so after a stop node 1 can start alone (`cluster start-node 1`).
  for n in "${nodes[@]:1}"; do stop_node "$n" & pids+=($!); done
  for n in "${pids[@]}"; do wait "$n" || true; done
  stop_node 1 || true
  if node_alive 1 || node_alive 2 || node_alive 3; then say "some nodes did not stop"; return 1; fi
  # epmd serves the single node too: leave it unless no Erlang VM is left at all.
  if [[ -z "$(pgrep -x beam.smp || true)" ]]; then epmd -kill >/dev/null 2>&1 || true; fi
  return 0
}

addresses() {
  local n out=""
  for n in "${nodes[@]}"; do out+="${out:+,}amqp://guest:guest@127.0.0.1:$(amqp_port "$n")/"; done
  echo "$out"
}

cluster_start() {
  local n t0 attempt ok port
  install_if_missing
  # Nodes of an earlier run are killed: their data is thrown away anyway.
  for n in "${nodes[@]}"; do
    if node_alive "$n"; then say "killing $(node_name "$n") of an earlier run"; kill_node "$n" || exit 1; fi
  done
  t0=$SECONDS
  for n in "${nodes[@]}"; do
    for port in "$(amqp_port "$n")" "$(dist_port "$n")"; do
      if listening "$port"; then
        say "127.0.0.1:$port is taken by another program:"; ss -ltnp "( sport = :$port )" >&2; exit 1
      fi
    done
  done
  ensure_cookie
  raise_file_limit
  # Boot the three VMs at once; a node that fails to boot is killed, its log shown, and booted again.
  for n in "${nodes[@]}"; do launch_node "$n" fresh; done
  for n in "${nodes[@]}"; do
    ok=""
    for attempt in 1 2; do
      if wait_listen "$n" 120; then ok=yes; break; fi
      show_log "$n"
      kill_node "$n" || true
      [[ $attempt == 1 ]] && { say "booting $(node_name "$n") once more"; launch_node "$n" fresh; }
    done
    [[ -n "$ok" ]] || { say "$(node_name "$n") did not start; see its log above"; exit 1; }
  done
  say "3 nodes listen after $((SECONDS - t0)) s; joining 2 and 3 to $(node_name 1)"
  for n in "${nodes[@]:1}"; do
    for step in stop_app reset "join_cluster $(node_name 1)" start_app; do
      # shellcheck disable=SC2086
      if ! ctl "$n" 120 $step >/dev/null 2>&1; then
        say "rabbitmqctl -n $(node_name "$n") $step failed or took over 120 s"
        show_log "$n"; show_log 1; exit 1
      fi
    done
  done
  if ! wait_running 1 120 "${nodes[@]}"; then
    for n in "${nodes[@]}"; do show_log "$n"; done
    exit 1
  fi
  for n in "${nodes[@]}"; do wait_listen "$n" 60 || { show_log "$n"; exit 1; }; done
  say "3 nodes running in one cluster after $((SECONDS - t0)) s"
  addresses
}

cluster_start_node() {
  local n=$1 t0=$SECONDS
  [[ -d "$(node_dir "$n")/mnesia" ]] || { say "no data for $(node_name "$n") in $(node_dir "$n"); run: cluster start"; exit 1; }
  if node_alive "$n"; then
    say "$(node_name "$n") is already running"
  else
    raise_file_limit
    launch_node "$n"
  fi
  # A node that restarts waits for its peers' tables before it listens (up to 5 minutes).
  if ! wait_listen "$n" 300; then show_log "$n"; exit 1; fi
  if ! wait_running "$n" 120 "$n"; then show_log "$n"; exit 1; fi
  say "$(node_name "$n") runs in the cluster after $((SECONDS - t0)) s (amqp://guest:guest@127.0.0.1:$(amqp_port "$n")/)"
}

cluster_status() {
  local n got all=yes
  got=$(running_nodes_any "${nodes[@]}")
  for n in "${nodes[@]}"; do
    if grep -qx "$(node_name "$n")" <<<"$got"; then
      echo "$(node_name "$n") running amqp://guest:guest@127.0.0.1:$(amqp_port "$n")/"
    elif node_alive "$n"; then
      echo "$(node_name "$n") not running in the cluster (its VM is up: booting, or stopped app)"; all=""
    else
      echo "$(node_name "$n") down"; all=""
    fi
  done
  [[ -n "$all" ]] || exit 3
}

node_arg() {
  [[ "${1:-}" =~ ^[123]$ ]] || { echo "rabbitmq cluster: node number must be 1, 2 or 3" >&2; usage; }
}

case "${1:-}" in
  start|stop) single "$1" ;;
  cluster)
    case "${2:-}" in
      start) cluster_start ;;
      stop) cluster_stop ;;
      status) cluster_status ;;
      kill-node)
        node_arg "${3:-}"
        if node_alive "$3"; then kill_node "$3"; say "killed $(node_name "$3")"
        else say "$(node_name "$3") is not running"; fi
        ;;
      start-node) node_arg "${3:-}"; cluster_start_node "$3" ;;
      *) usage ;;
    esac
    ;;
  *) usage ;;
esac
