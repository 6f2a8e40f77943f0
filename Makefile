# pgtandem build: `make` builds bin/pgtandem; `make test` installs what it needs,
# builds, and runs the unit + integration suites twice (plain and ASan+UBSan).

CC       ?= cc
PKGS     := libevent openssl libpq jansson libidn
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
WARN     := -std=c11 -Wall -Wextra -Werror
LAYERS   := base engine importer relay online admin cli
# Each layer's headers are in include/<layer>/ beside its sources in
# proxy/<layer>/; a layer's subfolders (engine/ops/) are named in the include.
LAYER_INC := $(LAYERS:%=-Iinclude/%)
BASE_CFLAGS := $(WARN) -D_GNU_SOURCE $(LAYER_INC) -I$(shell pg_config --includedir 2>/dev/null || echo /usr/include/postgresql)
CFLAGS   ?= -O2 -g
LDLIBS   := -lpg_query -lm

# A layer's subfolders (engine/ops/) belong to it.
SRCS      := $(foreach l,$(LAYERS),$(wildcard proxy/$(l)/*.c proxy/$(l)/*/*.c))
LIB_SRCS  := $(filter-out proxy/cli/main.c,$(SRCS))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)

# PGT_DEBUG: invariant checks that abort (session transitions, the drain count)
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -DPGT_DEBUG

.PHONY: all asan test test-image test-regress unit clients demo deps bench fuzz lint tidy clean docs
all: bin/pgtandem

# -MMD: each object lists the headers it includes (build/*/%.d), so a header
# change rebuilds exactly what depends on it. Objects also depend on this
# Makefile: a change of flags (or objects built before the .d files existed)
# rebuilds everything once.
build/rel/%.o: proxy/%.c Makefile
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(PKG_CFLAGS) -MMD -MP -c $< -o $@
build/asan/%.o: proxy/%.c Makefile
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -O1 -g $(SAN_FLAGS) $(PKG_CFLAGS) -MMD -MP -c $< -o $@
-include $(wildcard build/rel/*/*.d build/asan/*/*.d build/*/*/*/*.d)

bin/pgtandem: $(SRCS:proxy/%.c=build/rel/%.o)
	@mkdir -p bin
	$(CC) $(CFLAGS) -o $@ $^ $(PKG_LIBS) $(LDLIBS)
bin/pgtandem-asan: $(SRCS:proxy/%.c=build/asan/%.o)
	@mkdir -p bin
	$(CC) $(SAN_FLAGS) -o $@ $^ $(PKG_LIBS) $(LDLIBS)
asan: bin/pgtandem-asan

# Unit tests: one program per tests/unit/test_*.c, linked with every module but main.
build/rel/unit/%: tests/unit/%.c $(LIB_SRCS:proxy/%.c=build/rel/%.o) tests/unit/unit.h tests/unit/unit_steps.h
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(LIB_SRCS:proxy/%.c=build/rel/%.o) $(PKG_LIBS) $(LDLIBS)
build/asan/unit/%: tests/unit/%.c $(LIB_SRCS:proxy/%.c=build/asan/%.o) tests/unit/unit.h tests/unit/unit_steps.h
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -O1 -g $(SAN_FLAGS) $(PKG_CFLAGS) -o $@ $< $(LIB_SRCS:proxy/%.c=build/asan/%.o) $(PKG_LIBS) $(LDLIBS)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=build/rel/unit/%) $(UNIT_SRCS:tests/unit/%.c=build/asan/unit/%)

# The fuzz targets' recorded corpora, replayed under ASan+UBSan with gcc
# (tests/fuzz/replay.c stands in for libFuzzer's driver); run by make test.
build/asan/replay/%: tests/fuzz/%.c tests/fuzz/replay.c $(LIB_SRCS:proxy/%.c=build/asan/%.o)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -O1 -g $(SAN_FLAGS) $(PKG_CFLAGS) -o $@ $< tests/fuzz/replay.c $(LIB_SRCS:proxy/%.c=build/asan/%.o) $(PKG_LIBS) $(LDLIBS)
REPLAY_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=build/asan/replay/%)
unit: $(UNIT_BINS) $(REPLAY_BINS) clients

# Test clients written against libpq (pipeline mode, cancel, NOTIFY, large rows).
CLIENT_SRCS := $(wildcard tests/clients/*.c)
build/clients/%: tests/clients/%.c
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(PKG_LIBS) $(LDLIBS)
clients: $(CLIENT_SRCS:tests/clients/%.c=build/clients/%)

# Everything a fresh Debian 12 machine needs; idempotent and non-interactive.
deps:
	@sh tests/deps.sh

test: deps
	@$(MAKE) --no-print-directory -j$$(nproc) all asan unit
	@sh tests/run.sh

# The container image (docker/Dockerfile) built and run with podman; make
# test runs these too (tests/run.sh, PGT_IMAGE=0 leaves them out).
test-image: deps
	@PGT_VARIANT=image /usr/bin/python3 -m pytest -q -p no:cacheprovider -m image tests/integration/test_image.py \
	  tests/integration/test_image_kube.py

# PostgreSQL's regression suite direct and through the pool, compared (make
# test runs it too, tests/run.sh; PGT_REGRESS=0 leaves it out).
test-regress: deps bin/pgtandem
	@PGT_VARIANT=regress PGTANDEM_BIN=$(CURDIR)/bin/pgtandem /usr/bin/python3 -m pytest -q -p no:cacheprovider -m regress \
	  tests/integration/test_pg_regress.py

# doc/configuration.md: every command's --help and the settings without a flag,
# written from the binary (tests/integration/test_cli_help.py fails when stale)
docs: bin/pgtandem
	/usr/bin/python3 doc/gen_configuration.py bin/pgtandem > doc/configuration.md.tmp
	mv doc/configuration.md.tmp doc/configuration.md

demo: deps
	@$(MAKE) --no-print-directory all
	@sh tests/demo.sh

bench: deps
	@$(MAKE) --no-print-directory all
	@sh bench/proxy.sh
	@sh bench/backfill.sh

# every operation kind online and offline, side by side (ROWS=N, default 1M)
.PHONY: bench-ops
bench-ops:
	@$(MAKE) --no-print-directory all
	@sh bench/ops.sh

# libFuzzer targets (clang): FUZZ_RUNS inputs each.
FUZZ_RUNS ?= 1000000
build/fuzz/%: tests/fuzz/%.c $(LIB_SRCS)
	@mkdir -p $(@D)
	clang $(WARN) -D_GNU_SOURCE $(LAYER_INC) $(PKG_CFLAGS) -g -O1 -DPGT_DEBUG -fsanitize=fuzzer,address,undefined -o $@ $< $(LIB_SRCS) $(PKG_LIBS) $(LDLIBS)
fuzz: deps $(FUZZ_SRCS:tests/fuzz/%.c=build/fuzz/%)
	@for f in $(FUZZ_SRCS:tests/fuzz/%.c=build/fuzz/%); do \
	  echo "== $$f ($(FUZZ_RUNS) runs)"; mkdir -p build/fuzz/corpus-$$(basename $$f); \
	  $$f -runs=$(FUZZ_RUNS) -max_len=4096 build/fuzz/corpus-$$(basename $$f) tests/fuzz/seeds/$$(basename $$f) 2>&1 | tail -3 || exit 1; done

# Static checks, all of which must be clean: cppcheck, clang-tidy's
# analyzer (the clang static analyzer's core, unix and deadcode checkers),
# shellcheck, the layer rule of proxy/*/README.md over proxy/ and include/
# (tests/check_layers.py) and
# no comment naming a file that does not exist (tests/check_comment_paths.py),
# no status word spelled outside engine/migration_lifecycle.c
# (tests/check_status_words.py), no call cycle among online/'s files nor
# include cycle among modules (tests/check_call_cycles.py), and
# no integration test keeping a local copy of a shared helper (tests/check_test_helpers.py).
# compile_commands.json is written for editors and clang tools.
LINT_CFLAGS := -std=c11 -D_GNU_SOURCE $(LAYER_INC) -I$(shell pg_config --includedir 2>/dev/null || echo /usr/include/postgresql)
TIDY_CHECKS := -*,clang-analyzer-*,-clang-analyzer-security.insecureAPI.*,-clang-analyzer-optin.performance.Padding
CPPCHECK_CACHE ?= $(HOME)/.cache/pgtandem-cppcheck
lint: deps compile_commands.json
	@mkdir -p $(CPPCHECK_CACHE)
	cppcheck --quiet --cppcheck-build-dir=$(CPPCHECK_CACHE) --std=c11 --enable=warning,portability --error-exitcode=1 --inline-suppr \
	  -D_GNU_SOURCE $(LAYER_INC) --suppress=missingIncludeSystem proxy include tests/fuzz tests/unit tests/clients
	shellcheck -S warning tests/*.sh tests/image/*.sh tests/regress/*.sh docker/*.sh bench/*.sh .ci/run
	/usr/bin/python3 tests/check_layers.py
	/usr/bin/python3 tests/check_comment_paths.py
	/usr/bin/python3 tests/check_status_words.py
	/usr/bin/python3 tests/check_call_cycles.py
	/usr/bin/python3 tests/check_test_helpers.py
	@echo "clang-tidy (analyzer) on $(words $(SRCS)) files"
	@$(MAKE) --no-print-directory -j$$(nproc) tidy
	@echo "lint: clean"

# One stamp per source that clang-tidy passed, made after the source's
# object: a file is analyzed again when its object was rebuilt (the file, a
# header it includes by the compiler's -MMD list, or this Makefile
# changed); a fresh clone analyzes them all.
# A source whose preprocessed text (every header it includes, the flags)
# and checks the analyzer passed before, on this machine, is not analyzed
# again: the pass is kept under TIDY_CACHE by the hash of that text, as
# ccache keeps objects, so a fresh clone of an unchanged tree costs a
# preprocessor run per file instead of minutes of analysis beside the tests.
TIDY_CACHE ?= $(HOME)/.cache/pgtandem-tidy
TIDY_STAMPS := $(SRCS:proxy/%.c=build/tidy/%.ok)
tidy: $(TIDY_STAMPS)
build/tidy/%.ok: build/rel/%.o
	@mkdir -p $(@D) $(TIDY_CACHE)
	@key=$$( { $(CC) -E $(LINT_CFLAGS) proxy/$*.c; echo '$(TIDY_CHECKS)'; clang-tidy --version; } 2>/dev/null | sha256sum | cut -c1-64); \
	if [ ! -f "$(TIDY_CACHE)/$$key" ]; then \
	  clang-tidy -quiet --warnings-as-errors="*" --checks="$(TIDY_CHECKS)" proxy/$*.c -- $(LINT_CFLAGS) 2>/dev/null && \
	  touch "$(TIDY_CACHE)/$$key"; \
	fi
	@touch $@

compile_commands.json: $(SRCS) Makefile
	@printf '[\n' > $@.tmp
	@first=1; for f in $(SRCS); do \
	  [ $$first = 1 ] || printf ',\n' >> $@.tmp; first=0; \
	  printf '  {"directory": "%s", "file": "%s", "command": "clang %s -c %s"}' \
	    "$(CURDIR)" "$$f" "$(LINT_CFLAGS)" "$$f" >> $@.tmp; \
	done; printf '\n]\n' >> $@.tmp; mv $@.tmp $@

clean:
	rm -rf build bin compile_commands.json
