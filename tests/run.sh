#!/bin/sh
# The test runner behind `make test`: lint, the C unit tests and the pytest
# integration suite against bin/pgtandem, then the unit tests, fuzz replays
# and integration suite against the AddressSanitizer + UBSan build, and the
# closing `N passed, N failed` line.
#
# The integration suite runs under pytest-xdist: PGT_JOBS workers per
# variant, each with a Postgres cluster of its own (conftest.py), and the
# two variants at the same time (their output is shown one after the
# other). Tests marked `serial` run once both have ended, one at a time,
# on the runner's shared cluster.
#
#   PGT_ONLY=rel|asan   run one variant only
#   PGT_JOBS=N          xdist workers per variant (default 3; 0: no xdist,
#                       everything in one process on the shared cluster)
#   PGT_SEQUENTIAL=1    the variants one after the other, not at the same time
#   PGT_PYTEST_ARGS     extra pytest arguments (e.g. "-k pause")
#   PGT_TESTS           test files to run instead of all of tests/integration
#   PGT_KEEP=1          keep the run's directory in /tmp (clusters, logs)
#   PGT_IMAGE=0         without the container image tests
#   PGT_REGRESS=0       without PostgreSQL's regression suite through the pool
#   PGT_RUN_SLOT=1      ports of their own for a second run at the same time
#                       (another checkout's make test beside this one)
#
# The tests marked `image` (the container image, tests/integration/test_image.py)
# run once, after both suites: the image builds its own binary, and its build
# must not compete with the suites' timing. So does the test marked `regress`
# (PostgreSQL's regression suite direct and through the pool,
# tests/integration/test_pg_regress.py), against bin/pgtandem only: it
# compares Postgres's answers, which the sanitizer build does not change,
# and takes minutes.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
work=$(mktemp -d /tmp/pgtandem-test.XXXXXX)
chmod 755 "$work"
passed=0; failed=0
jobs=${PGT_JOBS:-3}

cleanup() {
  for d in "$work"/pg "$work"/*/pgtandem-pg-*/pg; do
    [ -d "$d" ] && sh tests/pgcluster.sh stop "$d" >/dev/null 2>&1
  done
  # the clusters and logs of a run take about a gigabyte: runs in a row
  # would fill the disk (PGT_KEEP=1 keeps them to look at)
  [ "${PGT_KEEP:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

has_serial_tests() {
  # shellcheck disable=SC2086
  grep -lq 'mark\.serial' ${PGT_TESTS:-tests/integration/test_*.py} 2>/dev/null
}

# the shared cluster: for a run without xdist and for the serial phase
if [ "$jobs" -eq 0 ] || has_serial_tests; then
  if ! sh tests/pgcluster.sh start "$work/pg" >"$work/cluster.log" 2>&1; then
    cat "$work/cluster.log"; echo "0 passed, 1 failed"; exit 1
  fi
  export PGT_ENV="$work/pg/env"
fi

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

unit_variant() {  # $1 = rel|asan
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
}

variant_env() {  # $1 = rel|asan: the variant's binary and its temporary files
  v=$1
  bin=bin/pgtandem; [ "$v" = asan ] && bin=bin/pgtandem-asan
  mkdir -p "$work/$v"; chmod 755 "$work/$v"
  # the tests' own temporary files (proxy logs, migration files, sockets)
  # go with the run's directory, not one by one into /tmp
  mkdir -p "$work/$v/tmp"; chmod 1777 "$work/$v/tmp"
  export TMPDIR="$work/$v/tmp" PGTANDEM_BIN="$top/$bin" PGT_VARIANT="$v"
}

# A subshell: what it exports is the variant's own.
integration() (  # $1 = rel|asan; output in $work/$1.log, results in $work/$1.xml
  variant_env "$1"
  {
    echo "== $v: integration tests"
    if [ "$jobs" -gt 0 ]; then
      # shellcheck disable=SC2086
      PGT_WORKDIR="$work/$v" /usr/bin/python3 -m pytest -q -p no:cacheprovider -n "$jobs" \
        -m "not serial and not image and not regress" --junitxml="$work/$v.xml" ${PGT_PYTEST_ARGS:-} ${PGT_TESTS:-tests/integration}
      echo $? >"$work/$v.rc"
    else
      # shellcheck disable=SC2086
      /usr/bin/python3 -m pytest -q -p no:cacheprovider -m "not image and not regress" \
        --junitxml="$work/$v.xml" ${PGT_PYTEST_ARGS:-} ${PGT_TESTS:-tests/integration}
      echo $? >"$work/$v.rc"
    fi
  } >"$work/$v.log" 2>&1
)

# The tests marked serial measure latencies (the budget's p99 against the
# app's own, an estimate against the backfill it predicts): they run once
# both variants' parallel suites have ended, one variant after the other,
# never beside the sanitizer build's suite (a window's p99 of 113 ms
# against a limit of 67 there, 4 of 4 passing on a quiet machine).
serial_integration() (  # $1 = rel|asan; output in $work/$1-serial.log
  variant_env "$1"
  {
    echo "== $v: integration tests marked serial"
    # shellcheck disable=SC2086
    /usr/bin/python3 -m pytest -q -p no:cacheprovider -m "serial and not image and not regress" \
      --junitxml="$work/$v-serial.xml" ${PGT_PYTEST_ARGS:-} ${PGT_TESTS:-tests/integration}
    echo $? >"$work/$v-serial.rc"
  } >"$work/$v-serial.log" 2>&1
)

regress_tests() {  # output in $work/regress.log, results in $work/regress.xml
  mkdir -p "$work/regress/tmp"; chmod 755 "$work/regress"; chmod 1777 "$work/regress/tmp"
  {
    echo "== regress: PostgreSQL's regression suite through the pool (bin/pgtandem)"
    # shellcheck disable=SC2086
    TMPDIR="$work/regress/tmp" PGTANDEM_BIN="$top/bin/pgtandem" PGT_VARIANT=regress PGT_WORKDIR="$work/regress" \
      /usr/bin/python3 -m pytest -q -p no:cacheprovider -m regress \
        --junitxml="$work/regress.xml" ${PGT_PYTEST_ARGS:-} ${PGT_TESTS:-tests/integration}
    echo $? >"$work/regress.rc"
  } >"$work/regress.log" 2>&1
}

image_tests() {  # output in $work/image.log, results in $work/image.xml
  mkdir -p "$work/image"; chmod 755 "$work/image"
  {
    echo "== image: the container image (podman)"
    # shellcheck disable=SC2086
    PGT_VARIANT=image PGT_WORKDIR="$work/image" \
      /usr/bin/python3 -m pytest -q -p no:cacheprovider -m image \
        --junitxml="$work/image.xml" ${PGT_PYTEST_ARGS:-} ${PGT_TESTS:-tests/integration}
    echo $? >"$work/image.rc"
  } >"$work/image.log" 2>&1
}

count_integration() {  # $1 = rel|asan: shows its output, adds its counts
  v=$1
  cat "$work/$v.log"
  [ -f "$work/$v-serial.log" ] && cat "$work/$v-serial.log"
  xmls="$work/$v.xml"
  [ -f "$work/$v-serial.xml" ] && xmls="$xmls $work/$v-serial.xml"
  # shellcheck disable=SC2086
  counts=$(/usr/bin/python3 tests/junit_counts.py $xmls)
  p=${counts% *}; f=${counts#* }
  # pytest failed (0: passed, 5: nothing selected) with no failure in its
  # report: an internal error, a worker lost, an interrupted run
  for rc in "$work/$v.rc" "$work/$v-serial.rc"; do
    [ -f "$rc" ] || continue
    case $(cat "$rc") in 0|5) ;; *) [ "$f" -eq 0 ] && { f=1; echo "FAIL $v: pytest exited $(cat "$rc")"; } ;; esac
  done
  passed=$((passed + p)); failed=$((failed + f))
}

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=86"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
variants=${PGT_ONLY:-rel asan}

# the integration suites first, in the background; lint and the unit tests
# meanwhile
pids=""
for v in $variants; do
  if [ "${PGT_SEQUENTIAL:-0}" = 1 ]; then
    integration "$v"
  else
    integration "$v" &
    pids="$pids $!"
  fi
done

echo "== lint (cppcheck, clang-tidy analyzer, shellcheck)"
# niced: the integration tests measure latencies and must not starve
if nice -n 10 make --no-print-directory -s lint >"$work/lint.log" 2>&1; then
  echo "PASS lint"; passed=$((passed + 1))
else
  cat "$work/lint.log"; echo "FAIL lint"; failed=$((failed + 1))
fi
for v in $variants; do unit_variant "$v"; done

for pid in $pids; do wait "$pid"; done
if [ "$jobs" -gt 0 ] && has_serial_tests; then
  for v in $variants; do serial_integration "$v"; done
fi
for v in $variants; do count_integration "$v"; done
if [ "${PGT_REGRESS:-1}" != 0 ]; then
  regress_tests
  count_integration regress
fi
if [ "${PGT_IMAGE:-1}" != 0 ]; then
  image_tests
  count_integration image
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
