#!/usr/bin/env bash
# The BENCHMARKS.md replica rows: N release assent-server processes (N in
# $REPLICAS, default "1 2 3") on one freshly created database, one
# `assent-bench flows --server URL1,URL2,…` spreading its relying-party
# channels and device streams round-robin over them (the servers with the
# creation limits the bench lifts for its own server), against the floor of
# the same database (16 pgbench clients: three replicas' pools and a
# 64-client floor would pass PostgreSQL's 100 connections). Appends one JSON
# object per run to $OUT, and after it one line per replica: its CPU during
# the run (ms of user + system time, /proc/PID/stat) and what its relay
# carried (its /metrics: NOTIFY payloads sent and received — each received
# payload wakes the relay once — and notices received), and the database's
# commits during the run (floor included).
#
#   cargo build --release -p assent-bench -p assent-server
#   bash bench/scripts/replicas.sh
#
# The servers listen on 127.0.0.1:61061… (above the kernel's ephemeral
# range, so client ports of an earlier run still in TIME_WAIT never take
# them), their metrics on 127.0.0.1:9161…
#
# Knobs: ADMIN_URL, DB, REPLICAS, CONCURRENCY (64), DURATION (10), OUT.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BENCH="${BENCH:-$HERE/target/release/assent-bench}"
SERVER="${SERVER:-$HERE/target/release/assent-server}"
ADMIN_URL="${ADMIN_URL:-postgres://postgres@127.0.0.1:5432}"
DB="${DB:-assent_bench_replicas}"
REPLICAS="${REPLICAS:-1 2 3}"
CONCURRENCY="${CONCURRENCY:-64}"
DURATION="${DURATION:-10}"
OUT="${OUT:-$HERE/target/bench-results.jsonl}"
URL="$ADMIN_URL/$DB"

pids=()
stop() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
trap stop EXIT
# Commits of the bench database so far.
commits() { psql "$ADMIN_URL/postgres" -tAc "SELECT xact_commit FROM pg_stat_database WHERE datname = '$DB'"; }
# User + system clock ticks of a process so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

for n in $REPLICAS; do
  psql "$ADMIN_URL/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
  psql "$ADMIN_URL/postgres" -qc "CREATE DATABASE $DB" >/dev/null
  "$SERVER" --database-url "$URL" migrate >/dev/null
  key=$("$SERVER" --database-url "$URL" app create --name Bench --json | sed -n 's/.*"api_key":"\([^"]*\)".*/\1/p')
  [ -n "$key" ] || { echo "no API key from app create" >&2; exit 1; }
  urls=()
  for i in $(seq 1 "$n"); do
    port=$((61060 + i))
    ASSENT_METRICS_LISTEN="127.0.0.1:$((9160 + i))" ASSENT_CREATE_RATE_PER_SECOND=1000000 ASSENT_CREATE_BURST=1000000 \
      ASSENT_PUSH_UNANSWERED_LIMIT=1000000 "$SERVER" --database-url "$URL" --listen "127.0.0.1:$port" \
      >"$HERE/target/replica-$i.log" 2>&1 &
    pids+=($!)
    urls+=("http://127.0.0.1:$port")
  done
  for i in $(seq 1 "$n"); do
    port=$((61060 + i))
    for _ in $(seq 1 100); do
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
      sleep 0.1
    done
  done
  servers=$(IFS=,; echo "${urls[*]}")
  echo "[replicas $(date -u +%H:%M:%S)] load $(cut -d' ' -f1-3 /proc/loadavg): $n replica(s)" >&2
  cpu_before=()
  for pid in "${pids[@]}"; do cpu_before+=("$(cpu_ticks "$pid")"); done
  commits_before=$(commits)
  "$BENCH" flows --server "$servers" --api-key "$key" --ceiling-database-url "$URL" \
    --ceiling-clients 16 \
    --concurrency "$CONCURRENCY" --duration "$DURATION" --json | tee -a "$OUT"
  # The database's commits during the run (the floor's and the load's):
  # how well each replica's group commit still batches.
  printf '{"replicas":%d,"database_commits":%d}\n' "$n" $(( $(commits) - commits_before )) | tee -a "$OUT"
  for i in $(seq 1 "$n"); do
    pid=${pids[$((i - 1))]}
    ticks=$(( $(cpu_ticks "$pid") - ${cpu_before[$((i - 1))]} ))
    metrics=$(curl -sf "http://127.0.0.1:$((9160 + i))/metrics" || true)
    counter() { printf '%s\n' "$metrics" | awk -v name="assent_$1_total" '$1 == name { print $2 }'; }
    printf '{"replicas":%d,"replica":%d,"cpu_ms":%d,"relay_payloads_sent":%s,"relay_payloads_received":%s,"relay_notices_received":%s}\n' \
      "$n" "$i" $(( ticks * 1000 / $(getconf CLK_TCK) )) \
      "$(counter relay_payloads_sent)" "$(counter relay_payloads_received)" "$(counter relay_notices_received)" | tee -a "$OUT"
  done
  echo >&2
  stop
done
