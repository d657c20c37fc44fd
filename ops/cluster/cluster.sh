#!/usr/bin/env bash
# The whole cluster on one machine, on loopback: Redis (membership and grain state), two silos (session and room
# grains), two gateways (the TCP front) and HAProxy in front of the gateways. Players connect to HAProxy's port.
# A part that dies is started again after a second (as systemd's Restart= would), so a chaos run that kills gateways
# or a silo sees them come back. Ctrl+C or SIGTERM stops everything: HAProxy first, then the gateways (their players
# get a Goodbye that asks them to reconnect), the silos, Redis.
#
# usage: ops/cluster/cluster.sh [--port P] [--dir D] [--no-restart]
#   --port P      HAProxy's port for players (default 7777); the other ports follow from it:
#                 gateways P+10, P+11 (operator ports P+20, P+21), silos P+30, P+31 (gateway-facing P+40, P+41,
#                 operator ports P+50, P+51), Redis P+60
#   --dir D       where logs, pid files and Redis's data go (default: a new folder under /tmp)
#   --no-restart  leave a part that died down
# Needs the server built (./run.sh cluster builds it) and Debian's redis-server and haproxy (installed when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."

PORT=7777
DIR=
RESTART=1
while [ $# -gt 0 ]; do
  case "$1" in
    --port) PORT=$2; shift 2 ;;
    --port=*) PORT=${1#*=}; shift ;;
    --dir) DIR=$2; shift 2 ;;
    --dir=*) DIR=${1#*=}; shift ;;
    --no-restart) RESTART=0; shift ;;
    *) echo "cluster: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -n "$DIR" ] || DIR=$(mktemp -d /tmp/gameserver-cluster-XXXXXX)
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
CONFIG=${CONFIG:-Release}
SERVER="GameServer/bin/$CONFIG/net10.0/GameServer.dll"
[ -f "$SERVER" ] || { echo "cluster: $SERVER is not built (./run.sh cluster builds it)" >&2; exit 1; }

REDIS_PORT=$((PORT + 60))
REDIS="127.0.0.1:$REDIS_PORT"
COMMON=(--Cluster:Mode=orleans "--Cluster:Redis=$REDIS" --Cluster:ClusterId=gameserver --Cluster:ServiceId=gameserver)

declare -A COMMANDS=()
declare -A PIDS=()
NAMES=()

define() {
  local name=$1
  shift
  COMMANDS[$name]=$(printf '%q ' "$@")
  NAMES+=("$name")
}

define redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$DIR" --appendonly yes --appendfsync everysec --save "" --protected-mode yes
for i in 1 2; do
  define "silo$i" dotnet "$SERVER" "${COMMON[@]}" --Cluster:Role=silo \
    "--Cluster:SiloPort=$((PORT + 29 + i))" "--Cluster:ClientPort=$((PORT + 39 + i))" "--Metrics:Port=$((PORT + 49 + i))"
done
for i in 1 2; do
  define "gateway$i" dotnet "$SERVER" "${COMMON[@]}" --Cluster:Role=gateway "--Cluster:GatewayId=gateway$i" \
    "--Server:Port=$((PORT + 9 + i))" "--Metrics:Port=$((PORT + 19 + i))" \
    --Server:ProxyProtocol=true --Server:ProxyProtocolTrustedProxies:0=127.0.0.1/32
done
sed -e "s|@DIR@|$DIR|g" -e "s|@PORT@|$PORT|g" \
  -e "s|@GATEWAY1@|$((PORT + 10))|g" -e "s|@GATEWAY2@|$((PORT + 11))|g" \
  -e "s|@GATEWAY1_METRICS@|$((PORT + 20))|g" -e "s|@GATEWAY2_METRICS@|$((PORT + 21))|g" \
  ops/cluster/haproxy.cfg >"$DIR/haproxy.cfg"
define haproxy haproxy -db -f "$DIR/haproxy.cfg"

start() {
  local name=$1
  # Each part in its own process group with its own log; its pid in DIR/NAME.pid for whoever wants to kill it.
  bash -c "exec ${COMMANDS[$name]}" >>"$DIR/$name.log" 2>&1 </dev/null &
  PIDS[$name]=$!
  echo "${PIDS[$name]}" >"$DIR/$name.pid"
}

stopping=0
stop_all() {
  stopping=1
  echo "cluster: stopping" >&2
  local group name
  # Front to back: no new players, then the gateways say Goodbye, then the grains' hosts, then their store.
  for group in "haproxy" "gateway1 gateway2" "silo1 silo2" "redis"; do
    for name in $group; do
      kill -TERM "${PIDS[$name]}" 2>/dev/null || true
    done
    for name in $group; do
      wait "${PIDS[$name]}" 2>/dev/null || true
      rm -f "$DIR/$name.pid"
    done
  done
  echo "cluster: stopped (logs in $DIR)" >&2
  exit 0
}
trap stop_all INT TERM

# Both gateways answer 200 on /readyz (bash's /dev/tcp: no curl needed).
ready() {
  local i status
  for i in 1 2; do
    status=$( (exec 3<>"/dev/tcp/127.0.0.1/$((PORT + 19 + i))" && printf 'GET /readyz HTTP/1.0\r\n\r\n' >&3 && head -c 12 <&3) 2>/dev/null) || return 1
    [[ "$status" == *" 200" ]] || return 1
  done
}

echo "cluster: starting in $DIR (logs and pid files there)" >&2
for name in "${NAMES[@]}"; do
  start "$name"
done

announced=0
started=$SECONDS
while [ "$stopping" = 0 ]; do
  for name in "${NAMES[@]}"; do
    if ! kill -0 "${PIDS[$name]}" 2>/dev/null; then
      code=0
      wait "${PIDS[$name]}" 2>/dev/null || code=$?
      if [ "$RESTART" = 1 ]; then
        echo "cluster: $name exited ($code); starting it again" >&2
        sleep 1
        start "$name"
      else
        echo "cluster: $name exited ($code)" >&2
        PIDS[$name]=0
      fi
    fi
  done
  if [ "$announced" = 0 ] && ready; then
    announced=1
    echo "cluster: ready in $((SECONDS - started)) s: players connect to 127.0.0.1:$PORT (HAProxy -> gateways 127.0.0.1:$((PORT + 10)), :$((PORT + 11)); Redis $REDIS)" >&2
  fi
  sleep 0.5 &
  wait $! 2>/dev/null || true
done
