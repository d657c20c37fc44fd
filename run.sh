#!/usr/bin/env bash
# The one entry point: ./run.sh server | client | test | stress | cluster | load | bench | pack
set -euo pipefail
cd "$(dirname "$0")"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

CONFIG=${CONFIG:-Release}
OUT=net10.0

usage() {
  cat <<USAGE
usage: ./run.sh <command> [args]
  server [--Key:Sub=value ...]   build and run the game server (embedded defaults: 127.0.0.1:7777, metrics :9464)
  client [options]               build and run the bot client against a server (./run.sh client --help)
  test                           build and run every test; ends with 'N passed, N failed'
  stress [--seconds N] [--seed S]
                                 build and run only the byte-exact stress tests (both transports, and the game server
                                 on each); --seconds N: rounds with new seeds for N s per case (default: one round);
                                 --seed S: the seed a failure printed, to run it again
  cluster [--port P] [--dir D]   build and run the cluster on loopback: Redis, 2 silos, 2 gateways and HAProxy on
                                 port P (default 7777); Ctrl+C stops it all (docs/CLUSTER.md)
  load [options]                 build and run the load suite (starts its own server unless --server host:port;
                                 ./run.sh load --help lists every option)
  bench [echo|fanout] [options]  build in Release, measure every server, write docs/PERFORMANCE.md (~30 min; echo or
                                 fanout: that part only, the other part's tables are kept)
  pack                           pack the connection library and the epoll transport as NuGet packages into
                                 artifacts/packages (what samples/EchoServer builds against)
USAGE
}

build() {
  # Says what it builds and how long it took; at a terminal MSBuild shows its live progress (the first build restores
  # packages and takes a minute or two), elsewhere the log is kept quiet and shown whole only on failure.
  local what=${1##*/} start=$SECONDS
  what=${what%.*}
  if [ ! -d "${NUGET_PACKAGES:-${HOME:-/root}/.nuget/packages}/dotnetty.transport" ]; then
    echo "building $what ($CONFIG); the first build downloads packages and takes a minute or two..." >&2
  else
    echo "building $what ($CONFIG)..." >&2
  fi
  if [ -t 2 ]; then
    dotnet build "$@" -c "$CONFIG" --nologo -v q -tl:on >&2 || { echo "build failed" >&2; exit 1; }
  else
    local log
    log=$(mktemp)
    if ! dotnet build "$@" -c "$CONFIG" --nologo -v q >"$log" 2>&1; then
      cat "$log" >&2
      rm -f "$log"
      echo "build failed" >&2
      exit 1
    fi
    rm -f "$log"
  fi
  echo "built $what in $((SECONDS - start)) s" >&2
}

# Debian packages that tests and the benchmark need (iptables for the pulled-cable case, gcc for the benchmark's
# native echo server and load client, prometheus, promtool and haproxy for ops/, redis-server and haproxy for the
# cluster). Installed by the project, never by hand.
ensure_test_packages() {
  local missing=()
  command -v iptables >/dev/null 2>&1 || missing+=(iptables)
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  command -v gcc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
  command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
  command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  if ((${#missing[@]})); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "installing ${missing[*]}" >&2
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}") >/dev/null 2>&1 ||
        echo "warning: could not install ${missing[*]}; the cases that need them will fail and say so" >&2
      # The tests start their own Prometheus and HAProxy; the system services a package starts are not wanted.
      local service
      for service in prometheus haproxy redis-server; do
        if [[ " ${missing[*]} " == *" $service "* ]] && command -v systemctl >/dev/null 2>&1; then
          systemctl disable --now "$service" >/dev/null 2>&1 || true
        fi
      done
    else
      echo "warning: ${missing[*]} missing and not root; the cases that need them will fail and say so" >&2
    fi
  fi
}

run_tests() {
  ensure_test_packages
  build GameServer.sln
  local results=TestResults
  rm -rf "$results"
  local status=0
  # One test project at a time: run side by side, the timing-sensitive cases of one would share the two cores
  # with the other's load.
  local project
  # Transport.Conformance.Tests runs once: its cases run on each transport themselves.
  for project in tests/Transport.Epoll.Tests/Transport.Epoll.Tests.csproj tests/Transport.Conformance.Tests/Transport.Conformance.Tests.csproj \
    tests/GameServer.Tests/GameServer.Tests.csproj tests/Package.Tests/Package.Tests.csproj; do
    dotnet test "$project" -c "$CONFIG" --no-build --nologo \
      --logger "trx" --logger "console;verbosity=normal" --results-directory "$results" \
      --blame-hang-timeout 5m "$@" || status=$?
  done
  # The server's tests once more on the epoll transport (the first pass ran them on DotNetty's stock sockets).
  # The load suite's own tests, the bench smoke run, the ops/ files against Prometheus and the cluster's failure cases
  # need no second pass: they start their own processes or do not touch a transport.
  echo "again on the epoll transport..." >&2
  GAMESERVER_TEST_TRANSPORT=epoll dotnet test tests/GameServer.Tests/GameServer.Tests.csproj -c "$CONFIG" --no-build --nologo \
    --logger "trx;LogFilePrefix=epoll" --logger "console;verbosity=normal" --results-directory "$results" \
    --blame-hang-timeout 5m --filter "FullyQualifiedName!~LoadSmokeTests&FullyQualifiedName!~BenchSmokeTests&FullyQualifiedName!~ClientPoolTests&FullyQualifiedName!~LoadCommandLineTests&FullyQualifiedName!~LoadHarnessTests&FullyQualifiedName!~LoadReportTests&FullyQualifiedName!~ThresholdTests&FullyQualifiedName!~GeneratorProbeTests&FullyQualifiedName!~OpsFolderTests&FullyQualifiedName!~ClusterTests" \
    "$@" || status=$?
  # A hang is killed by the blame collector; name the test that was running so CI shows it.
  local seq aborted=0
  for seq in "$results"/*/Sequence_*.xml; do
    [ -e "$seq" ] || continue
    echo "hang or crash: the tests running last were:" >&2
    grep -o 'Name="[^"]*"' "$seq" | tail -n 3 >&2
    aborted=$((aborted + 1))
  done
  # dotnet test prints no plain count line; sum the TRX counters of every test project.
  local passed=0 failed=0 skipped=0 total=0 f counters
  for f in "$results"/*.trx; do
    [ -e "$f" ] || continue
    counters=$(grep -o '<Counters [^>]*' "$f" | head -n 1)
    total=$((total + $(sed -n 's/.* total="\([0-9]*\)".*/\1/p' <<<"$counters")))
    passed=$((passed + $(sed -n 's/.* passed="\([0-9]*\)".*/\1/p' <<<"$counters")))
    failed=$((failed + $(sed -n 's/.* failed="\([0-9]*\)".*/\1/p' <<<"$counters")))
  done
  skipped=$((total - passed - failed))
  # A run the blame collector aborted never wrote its hung test as failed: count it, so the line does not say 0.
  failed=$((failed + aborted))
  if ((total == 0)); then
    echo "no tests ran" >&2
    status=1
  fi
  if ((skipped > 0)); then
    echo "$passed passed, $failed failed, $skipped skipped"
  else
    echo "$passed passed, $failed failed"
  fi
  if ((failed > 0)); then status=1; fi
  return "$status"
}

# The seeded byte-exact stress cases only: the transports' (each case runs on both) and the game server's (once per
# transport, as run_tests does). STRESS_SECONDS and STRESS_SEED reach the cases through the environment.
run_stress() {
  local seconds="" seed=""
  while (($#)); do
    case "$1" in
      --seconds)
        [[ ${2:-} =~ ^[0-9]+$ ]] || { echo "--seconds wants a whole number of seconds, not '${2:-}'" >&2; exit 2; }
        seconds=$2
        shift 2
        ;;
      --seed)
        [[ ${2:-} =~ ^-?[0-9]+$ ]] || { echo "--seed wants a number, not '${2:-}'" >&2; exit 2; }
        seed=$2
        shift 2
        ;;
      *)
        echo "unknown stress option: $1" >&2
        usage >&2
        exit 2
        ;;
    esac
  done
  echo "building ($CONFIG)..." >&2
  build tests/Transport.Conformance.Tests/Transport.Conformance.Tests.csproj
  build tests/GameServer.Tests/GameServer.Tests.csproj
  if [ -n "$seconds" ]; then export STRESS_SECONDS=$seconds; else unset STRESS_SECONDS; fi
  if [ -n "$seed" ]; then export STRESS_SEED=$seed; else unset STRESS_SEED; fi
  # A long form runs each case for --seconds: the hang detector must allow that and the last round.
  local hang=$((${seconds:-0} + 300))
  local filter="FullyQualifiedName~ByteExactStressTests"
  local status=0
  dotnet test tests/Transport.Conformance.Tests/Transport.Conformance.Tests.csproj -c "$CONFIG" --no-build --nologo \
    --logger "console;verbosity=detailed" --filter "$filter" --blame-hang-timeout "${hang}s" || status=$?
  local transport
  for transport in sockets epoll; do
    echo "the game server on the $transport transport..." >&2
    GAMESERVER_TEST_TRANSPORT=$transport dotnet test tests/GameServer.Tests/GameServer.Tests.csproj -c "$CONFIG" --no-build --nologo \
      --logger "console;verbosity=detailed" --filter "$filter" --blame-hang-timeout "${hang}s" || status=$?
  done
  return "$status"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  server)
    build GameServer/GameServer.csproj
    # exec: SIGTERM and Ctrl+C reach the server itself, which says Goodbye to every client before it stops.
    exec dotnet "GameServer/bin/$CONFIG/$OUT/GameServer.dll" "$@"
    ;;
  client)
    build GameClient/Bot/GameClient.Bot.csproj
    exec dotnet "GameClient/Bot/bin/$CONFIG/$OUT/GameClient.Bot.dll" "$@"
    ;;
  test)
    run_tests "$@"
    ;;
  stress)
    run_stress "$@"
    ;;
  bench)
    ensure_test_packages
    CONFIG=Release
    build bench/Bench/Bench.csproj
    exec dotnet "bench/Bench/bin/Release/$OUT/Bench.dll" --out docs/PERFORMANCE.md "$@"
    ;;
  pack)
    CONFIG=Release
    rm -rf artifacts/packages artifacts/sample-packages
    for project in TcpConnections/TcpConnections.csproj Transport.Epoll/Transport.Epoll.csproj; do
      dotnet pack "$project" -c Release --nologo -v q -o artifacts/packages "$@"
    done
    ls -1 artifacts/packages
    ;;
  cluster)
    ensure_test_packages
    build GameServer/GameServer.csproj
    # exec: Ctrl+C and SIGTERM reach the launcher, which stops the parts front to back.
    exec bash ops/cluster/cluster.sh "$@"
    ;;
  load)
    build LoadTests/LoadTests.csproj
    exec dotnet "LoadTests/bin/$CONFIG/$OUT/LoadTests.dll" "$@"
    ;;
  -h | --help | help | "")
    usage
    ;;
  *)
    echo "unknown command: $cmd" >&2
    usage >&2
    exit 2
    ;;
esac
