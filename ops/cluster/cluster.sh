#!/usr/bin/env bash
# The whole cluster on one machine, on loopback: Redis (membership and grain state), two silos (session and room
# grains), two gateways (the TCP front) and HAProxy in front of the gateways. Players connect to HAProxy's port.
# A part that dies is started again after a second (as systemd's Restart= would; longer when it keeps dying at once,
# and never after exit code 2, a configuration error), so a chaos run that kills gateways or a silo sees them come
# back. Ctrl+C or SIGTERM stops everything, front to back: the gateways first (their players get a Goodbye that asks
# them to reconnect; with the whole cluster stopping, their reconnects fail and they end), then HAProxy, the silos,
# Redis. Each part runs in a session of its own, so Ctrl+C at the terminal reaches only the launcher.
#
# usage: ops/cluster/cluster.sh [--port P] [--dir D] [--no-restart] [--redis-fsync always|everysec]
#   --port P      HAProxy's port for players (default 7777); the other ports follow from it:
#                 gateways P+10, P+11 (operator ports P+20, P+21), silos P+30, P+31 (gateway-facing P+40, P+41,
#                 operator ports P+50, P+51), Redis P+60, HAProxy's runtime API P+70
#   --dir D       where logs, pid files and Redis's data go (default: a new folder under /tmp)
#   --no-restart  leave a part that died down
#   --redis-fsync always (default: every save on disk before the grain goes on, so a killed Redis loses nothing a
#                 client saw) or everysec (faster; a Redis crash may lose the last second: see docs/CLUSTER.md)
# Needs the server built (./run.sh cluster builds it) and Debian's redis-server and haproxy (installed when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."

PORT=7777
DIR=
RESTART=1
FSYNC=always
while [ $# -gt 0 ]; do
  case "$1" in
    --port) PORT=$2; shift 2 ;;
    --port=*) PORT=${1#*=}; shift ;;
    --dir) DIR=$2; shift 2 ;;
    --dir=*) DIR=${1#*=}; shift ;;
    --no-restart) RESTART=0; shift ;;
    --redis-fsync) FSYNC=$2; shift 2 ;;
    --redis-fsync=*) FSYNC=${1#*=}; shift ;;
    *) echo "cluster: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ "$FSYNC" == always || "$FSYNC" == everysec ]] || { echo "cluster: --redis-fsync must be always or everysec, not '$FSYNC'" >&2; exit 2; }
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
declare -A STARTED=()
declare -A DELAY=()
declare -A RESTART_AT=()
NAMES=()

define() {
  local name=$1
  shift
  COMMANDS[$name]=$(printf '%q ' "$@")
  NAMES+=("$name")
}

# appendfsync always: a save a session grain was told succeeded is on disk before anything it sent leaves, so even a
# SIGKILLed Redis comes back with every sequence number a client has seen.
define redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$DIR" --appendonly yes --appendfsync "$FSYNC" --save "" --protected-mode yes
for i in 1 2; do
  define "silo$i" dotnet "$SERVER" "${COMMON[@]}" --Cluster:Role=silo \
    "--Cluster:SiloPort=$((PORT + 29 + i))" "--Cluster:ClientPort=$((PORT + 39 + i))" "--Metrics:Port=$((PORT + 49 + i))"
done
for i in 1 2; do
  define "gateway$i" dotnet "$SERVER" "${COMMON[@]}" --Cluster:Role=gateway "--Cluster:GatewayId=gateway$i" \
    "--Server:Port=$((PORT + 9 + i))" "--Metrics:Port=$((PORT + 19 + i))" \
    --Server:ProxyProtocol=true --Server:ProxyProtocolTrustedProxies:0=127.0.0.1/32
done
sed -e "s|@DIR@|$DIR|g" -e "s|@PORT@|$PORT|g" -e "s|@STATS@|$((PORT + 70))|g" \
  -e "s|@GATEWAY1@|$((PORT + 10))|g" -e "s|@GATEWAY2@|$((PORT + 11))|g" \
  -e "s|@GATEWAY1_METRICS@|$((PORT + 20))|g" -e "s|@GATEWAY2_METRICS@|$((PORT + 21))|g" \
  ops/cluster/haproxy.cfg >"$DIR/haproxy.cfg"
define haproxy haproxy -db -f "$DIR/haproxy.cfg"

# What a load run (./run.sh load --cluster DIR) needs to find the parts: the players' port, each gateway's metrics,
# HAProxy's runtime API.
cat >"$DIR/cluster.env" <<ENV
PORT=$PORT
GATEWAY_METRICS=$((PORT + 20)) $((PORT + 21))
SILO_METRICS=$((PORT + 50)) $((PORT + 51))
HAPROXY_STATS=$((PORT + 70))
PARTS=redis silo1 silo2 gateway1 gateway2 haproxy
ENV

start() {
  local name=$1
  # Each part in a session of its own (setsid) with its own log; its pid in DIR/NAME.pid for whoever wants to kill it.
  setsid bash -c "exec ${COMMANDS[$name]}" >>"$DIR/$name.log" 2>&1 </dev/null &
  PIDS[$name]=$!
  STARTED[$name]=$SECONDS
  echo "${PIDS[$name]}" >"$DIR/$name.pid"
}

stopping=0
stop_all() {
  stopping=1
  echo "cluster: stopping" >&2
  local group name
  # Front to back: the gateways say Goodbye (their /readyz turns 503 first), then HAProxy goes (SIGUSR1: it lets
  # the connections it still carries finish), then the grains' hosts, then their store.
  for group in "gateway1 gateway2" "haproxy" "silo1 silo2" "redis"; do
    for name in $group; do
      [ "${PIDS[$name]}" != 0 ] || continue
      if [ "$name" = haproxy ]; then
        kill -USR1 "${PIDS[$name]}" 2>/dev/null || true
      else
        kill -TERM "${PIDS[$name]}" 2>/dev/null || true
      fi
    done
    for name in $group; do
      [ "${PIDS[$name]}" != 0 ] || continue
      wait "${PIDS[$name]}" 2>/dev/null || true
      # Only its own: another launcher may have started in this folder since.
      [ "$(cat "$DIR/$name.pid" 2>/dev/null)" != "${PIDS[$name]}" ] || rm -f "$DIR/$name.pid"
    done
  done
  echo "cluster: stopped (logs in $DIR)" >&2
  exit 0
}
trap stop_all INT TERM

# Ready when HAProxy sends players to both gateways: each answered its /readyz checks (bash's /dev/tcp: no curl or
# socat needed).
ready() {
  local stat
  stat=$( (exec 3<>"/dev/tcp/127.0.0.1/$((PORT + 70))" && printf 'show stat\n' >&3 && cat <&3) 2>/dev/null) || return 1
  [ "$(grep -c '^gateways,gateway[12],.*,UP,' <<<"$stat")" = 2 ]
}

echo "cluster: starting in $DIR (logs and pid files there)" >&2
for name in "${NAMES[@]}"; do
  start "$name"
done

announced=0
started=$SECONDS
while [ "$stopping" = 0 ]; do
  for name in "${NAMES[@]}"; do
    # A part waiting for its restart time: started from this loop, so a long backoff never stalls the others or a stop.
    if [ -n "${RESTART_AT[$name]:-}" ]; then
      if ((SECONDS >= RESTART_AT[$name])); then
        unset "RESTART_AT[$name]"
        start "$name"
      fi
      continue
    fi
    [ "${PIDS[$name]}" != 0 ] || continue
    if ! kill -0 "${PIDS[$name]}" 2>/dev/null; then
      code=0
      wait "${PIDS[$name]}" 2>/dev/null || code=$?
      if [ "$RESTART" = 1 ] && [ "$code" != 2 ]; then
        # One second, doubled (up to 30) while the part keeps dying within 10 s of its start.
        if ((SECONDS - STARTED[$name] < 10)); then
          DELAY[$name]=$(( ${DELAY[$name]:-0} == 0 ? 1 : (DELAY[$name] * 2 > 30 ? 30 : DELAY[$name] * 2) ))
        else
          DELAY[$name]=1
        fi
        echo "cluster: $name exited ($code); starting it again in ${DELAY[$name]} s" >&2
        RESTART_AT[$name]=$((SECONDS + DELAY[$name]))
      else
        echo "cluster: $name exited ($code)$([ "$code" = 2 ] && echo ': a configuration error, see its log')" >&2
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
