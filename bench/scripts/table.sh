#!/usr/bin/env bash
# Runs the BENCHMARKS.md table: flows at c = 1, 8, 32, 64 (each against the
# floor of its run, the default), push at c = 1 and 8 with 10 000 connected
# devices, idle at 10 000 (assent-server and the bare tonic baseline) and
# 50 000 agents. Each figure ROUNDS times, on a freshly created database each
# time. Appends one JSON object per run to $OUT; a run with errors exits
# non-zero, which stops the script (except the 50 000-agent run, which this
# machine's open-file limit cuts short).
#
#   cargo build --release -p assent-bench -p assent-server
#   bash bench/scripts/table.sh                       # everything, 2 rounds
#   ROUNDS=1 ONLY=flows bash bench/scripts/table.sh   # one part
#
# Knobs: ADMIN_URL (a PostgreSQL URL whose user may create databases),
# DB (database name, dropped and recreated per run), ROUNDS, DURATION,
# ONLY (flows|push|idle), OUT.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BENCH="${BENCH:-$HERE/target/release/assent-bench}"
ADMIN_URL="${ADMIN_URL:-postgres://postgres@127.0.0.1:5432}"
DB="${DB:-assent_bench}"
ROUNDS="${ROUNDS:-2}"
DURATION="${DURATION:-15}"
ONLY="${ONLY:-all}"
OUT="${OUT:-$HERE/target/bench-results.jsonl}"

fresh_db() {
  psql "$ADMIN_URL/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
  psql "$ADMIN_URL/postgres" -qc "CREATE DATABASE $DB" >/dev/null
}

run() {
  fresh_db
  echo "[table $(date -u +%H:%M:%S)] load $(cut -d' ' -f1-3 /proc/loadavg): assent-bench $*" >&2
  "$BENCH" "$@" --database-url "$ADMIN_URL/$DB" --json | tee -a "$OUT"
  echo >&2
}

for _ in $(seq 1 "$ROUNDS"); do
  if [ "$ONLY" = all ] || [ "$ONLY" = flows ]; then
    for c in 1 8 32 64; do
      run flows --concurrency "$c" --duration "$DURATION"
    done
  fi
  if [ "$ONLY" = all ] || [ "$ONLY" = push ]; then
    for c in 1 8; do
      run push --concurrency "$c" --devices 10000 --duration "$DURATION" --in-flight 64
    done
  fi
  if [ "$ONLY" = all ] || [ "$ONLY" = idle ]; then
    run idle --agents 10000 --duration 5
    "$BENCH" idle --bare --agents 10000 --duration 5 --json | tee -a "$OUT"
  fi
done
if [ "$ONLY" = all ] || [ "$ONLY" = idle ]; then
  run idle --agents 50000 --duration 5 || true
fi
