#!/bin/sh
# The test runner behind `make test`: starts a throwaway Postgres (TLS + SCRAM),
# runs the C unit tests and the pytest integration suite against bin/pgtandem,
# then both again against the AddressSanitizer + UBSan build, stops the
# cluster and prints the closing `N passed, N failed` line.
#
#   PGT_ONLY=rel|asan   run one variant only
#   PGT_PYTEST_ARGS     extra pytest arguments (e.g. "-k pause")
#   PGT_TESTS           test files to run instead of all of tests/integration
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
work=$(mktemp -d /tmp/pgtandem-test.XXXXXX)
chmod 755 "$work"
passed=0; failed=0

cleanup() { sh tests/pgcluster.sh stop "$work/pg" >/dev/null 2>&1; }
trap cleanup EXIT INT TERM

if ! sh tests/pgcluster.sh start "$work/pg" >"$work/cluster.log" 2>&1; then
  cat "$work/cluster.log"; echo "0 passed, 1 failed"; exit 1
fi
export PGT_ENV="$work/pg/env"

count_unit() {  # runs one unit binary, counts its PASS/FAIL lines
  count_unit_args "$1"
}

count_unit_args() {  # like count_unit, with arguments for the binary
  out=$("$@" 2>&1); rc=$?
  p=$(printf '%s\n' "$out" | grep -c '^PASS ')
  f=$(printf '%s\n' "$out" | grep -c '^FAIL ')
  printf '%s\n' "$out" | grep -v '^PASS ' || true
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "FAIL $1 exited $rc"; fi
  passed=$((passed + p)); failed=$((failed + f))
}

run_variant() {  # $1 = rel|asan
  v=$1
  echo "== $v: unit tests"
  for t in build/$v/unit/test_*; do [ -x "$t" ] && count_unit "$t"; done
  if [ "$v" = asan ]; then
    echo "== asan: fuzz corpora"
    for r in build/asan/replay/fuzz_*; do
      [ -x "$r" ] || continue
      name=$(basename "$r")
      count_unit_args "$r" "$name" tests/fuzz/seeds/"$name"/*
    done
  fi
  echo "== $v: integration tests"
  bin=bin/pgtandem; [ "$v" = asan ] && bin=bin/pgtandem-asan
  PGTANDEM_BIN="$top/$bin" PGT_VARIANT=$v \
    /usr/bin/python3 -m pytest -q -p no:cacheprovider --junitxml="$work/$v.xml" \
      ${PGT_PYTEST_ARGS:-} ${PGT_TESTS:-tests/integration}
  counts=$(/usr/bin/python3 tests/junit_counts.py "$work/$v.xml")
  passed=$((passed + ${counts% *})); failed=$((failed + ${counts#* }))
}

echo "== lint (cppcheck, clang-tidy analyzer, shellcheck)"
if make --no-print-directory -s lint >"$work/lint.log" 2>&1; then
  echo "PASS lint"; passed=$((passed + 1))
else
  cat "$work/lint.log"; echo "FAIL lint"; failed=$((failed + 1))
fi

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=86"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
for v in ${PGT_ONLY:-rel asan}; do run_variant "$v"; done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
