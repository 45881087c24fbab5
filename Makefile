# retentiond - build, test, run.
#   make run    install what is missing, build, start a private PostgreSQL if DATABASE_URL is
#               unset, migrate, create a demo tenant holding the sample shop (DEMO=0: empty)
#               and a key, serve on $PORT (default 8080)
#   make test   install, build, unit tests (check), integration tests against a throw-away
#               PostgreSQL and the real server; then the same suite under ASan + UBSan
#   make test-citus  the integration tests against a Citus coordinator and two workers it starts
#               (docs/scaling.md); says it was skipped when Citus is not installed
#   make bench  the performance comparisons of README's performance section

CC      ?= gcc
PKGS    := libmicrohttpd jansson libpq libcrypto libcurl
CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu17 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wformat=2 \
           -fno-strict-aliasing -pthread -Iinclude -I$(B)/gen
LDLIBS  += -pthread -lm
B       ?= build
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin

SRCS := $(sort $(wildcard src/*.c src/*/*.c))
MIGRATIONS := $(sort $(wildcard migrations/*.sql))
# The current definition of every SQL function, applied by `retentiond migrate` after the
# migrations in this order (a SQL-language function is checked against the functions it calls
# when it is created, so a callee's file comes first). retired.sql drops what was removed.
SQL_FILES := $(addprefix sql/,retired.sql rules.sql outbox.sql rollup.sql ingest.sql ladder.sql reports.sql clv.sql customers.sql tenants.sql privacy.sql)
ifneq ($(sort $(SQL_FILES)),$(sort $(wildcard sql/*.sql)))
$(error sql/*.sql and SQL_FILES in the Makefile differ: $(filter-out $(SQL_FILES),$(wildcard sql/*.sql)) $(filter-out $(wildcard sql/*.sql),$(SQL_FILES)))
endif
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
# everything but main.c, for linking unit tests against the modules they test
LIB_SRCS := $(filter-out src/main.c,$(SRCS))

DEPS_LEVEL ?= test
DEPS_STAMP := $(B)/.deps-$(DEPS_LEVEL)-$(shell cat scripts/install-deps.sh | cksum | cut -d' ' -f1)

.PHONY: all deps run test unit integration test-citus test-asan bench soak fuzz install clean

all: $(B)/retentiond

$(DEPS_STAMP): scripts/install-deps.sh
	@mkdir -p $(B)
	@scripts/install-deps.sh $(DEPS_LEVEL)
	@touch $@

deps: $(DEPS_STAMP)

$(B)/gen/migrations.c: scripts/embed-schema.sh $(MIGRATIONS) $(SQL_FILES)
	@mkdir -p $(B)/gen
	scripts/embed-schema.sh $(MIGRATIONS) -- $(SQL_FILES) > $@

# (the demo shop's orders: tests/fixtures/cdnow/SOURCE.md)
ASSETS := openapi=src/api/openapi.json dashboard=src/api/dashboard.html cdnow=tests/fixtures/cdnow/CDNOW_sample.txt
$(B)/gen/assets.c: Makefile scripts/embed-assets.sh src/api/openapi.json src/api/dashboard.html tests/fixtures/cdnow/CDNOW_sample.txt
	@mkdir -p $(B)/gen
	scripts/embed-assets.sh $(ASSETS) > $@

# --- release build ---
OBJS := $(patsubst src/%.c,$(B)/obj/%.o,$(SRCS)) $(B)/obj/gen/migrations.o $(B)/obj/gen/assets.o
LIB_OBJS := $(filter-out $(B)/obj/main.o,$(OBJS))

$(B)/obj/%.o: src/%.c | $(DEPS_STAMP) $(B)/gen/migrations.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(shell pkg-config --cflags $(PKGS)) -MMD -MP -c $< -o $@

$(B)/obj/gen/%.o: $(B)/gen/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(shell pkg-config --cflags $(PKGS)) -c $< -o $@

$(B)/retentiond: $(OBJS)
	$(CC) $(CFLAGS) -o $@ $^ $(shell pkg-config --libs $(PKGS)) $(LDLIBS)

# --- sanitizer build (separate objects) ---
ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
ASAN_OBJS := $(patsubst src/%.c,$(B)/asan/%.o,$(SRCS)) $(B)/asan/gen/migrations.o $(B)/asan/gen/assets.o

$(B)/asan/%.o: src/%.c | $(DEPS_STAMP) $(B)/gen/migrations.c
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -O2,$(CFLAGS)) $(ASAN_FLAGS) $(shell pkg-config --cflags $(PKGS)) -MMD -MP -c $< -o $@

$(B)/asan/gen/%.o: $(B)/gen/%.c
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -O2,$(CFLAGS)) $(ASAN_FLAGS) $(shell pkg-config --cflags $(PKGS)) -c $< -o $@

$(B)/asan/retentiond: $(ASAN_OBJS)
	$(CC) $(ASAN_FLAGS) -o $@ $^ $(shell pkg-config --libs $(PKGS)) $(LDLIBS)

# --- unit tests: one check program per suite, linked with the modules ---
$(B)/unit/%: tests/unit/%.c $(LIB_OBJS)
	@mkdir -p $(B)/unit
	$(CC) $(CFLAGS) $(shell pkg-config --cflags check $(PKGS)) $< $(LIB_OBJS) -o $@ \
	    $(shell pkg-config --libs check $(PKGS)) $(LDLIBS)

$(B)/unit-asan/%: tests/unit/%.c $(filter-out $(B)/asan/main.o,$(ASAN_OBJS))
	@mkdir -p $(B)/unit-asan
	$(CC) $(filter-out -O2,$(CFLAGS)) $(ASAN_FLAGS) $(shell pkg-config --cflags check $(PKGS)) $< \
	    $(filter-out $(B)/asan/main.o,$(ASAN_OBJS)) -o $@ $(shell pkg-config --libs check $(PKGS)) $(LDLIBS)

UNIT_BINS := $(patsubst tests/unit/%.c,$(B)/unit/%,$(UNIT_SRCS))
UNIT_ASAN_BINS := $(patsubst tests/unit/%.c,$(B)/unit-asan/%,$(UNIT_SRCS))

# --- programs the integration tests run (tests/tools), linked with the modules; each sits in
# tools/ beside the binary under test, where the tests look for it ---
TOOL_SRCS := $(sort $(wildcard tests/tools/*.c))
TOOL_BINS := $(patsubst tests/tools/%.c,$(B)/tools/%,$(TOOL_SRCS))
TOOL_ASAN_BINS := $(patsubst tests/tools/%.c,$(B)/asan/tools/%,$(TOOL_SRCS))

$(B)/tools/%: tests/tools/%.c $(LIB_OBJS)
	@mkdir -p $(B)/tools
	$(CC) $(CFLAGS) $(shell pkg-config --cflags $(PKGS)) $< $(LIB_OBJS) -o $@ $(shell pkg-config --libs $(PKGS)) $(LDLIBS)

$(B)/asan/tools/%: tests/tools/%.c $(filter-out $(B)/asan/main.o,$(ASAN_OBJS))
	@mkdir -p $(B)/asan/tools
	$(CC) $(filter-out -O2,$(CFLAGS)) $(ASAN_FLAGS) $(shell pkg-config --cflags $(PKGS)) $< \
	    $(filter-out $(B)/asan/main.o,$(ASAN_OBJS)) -o $@ $(shell pkg-config --libs $(PKGS)) $(LDLIBS)

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; RD_FIXTURES=tests/fixtures CK_FORK=no $$t; done

tests/node/node_modules: tests/node/package-lock.json
	cd tests/node && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

integration: $(B)/retentiond $(TOOL_BINS) tests/node/node_modules
	RETENTIOND_BIN=$(abspath $(B))/retentiond python3 -m unittest discover -s tests/integration -p 'test_*.py' -v

# TESTS: which modules, as a file pattern (TESTS=test_ingest.py runs one)
TESTS ?= test_*.py
CITUS_SO = $(shell pg_config --pkglibdir 2>/dev/null)/citus.so
test-citus: $(B)/retentiond $(TOOL_BINS) tests/node/node_modules
	@if [ ! -f "$(CITUS_SO)" ]; then \
	    echo "test-citus: SKIPPED - Citus is not installed ($(CITUS_SO) does not exist; docs/scaling.md says how to build it)"; \
	    exit 0; \
	fi; \
	RETENTIOND_CITUS=1 RETENTIOND_BIN=$(abspath $(B))/retentiond \
	    python3 -m unittest discover -s tests/integration -p '$(TESTS)' -v

test-asan: $(B)/asan/retentiond $(TOOL_ASAN_BINS) $(UNIT_ASAN_BINS) tests/node/node_modules
	@set -e; for t in $(UNIT_ASAN_BINS); do echo "== $$t (asan)"; RD_FIXTURES=tests/fixtures CK_FORK=no $$t; done
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	RETENTIOND_BIN=$(abspath $(B))/asan/retentiond RETENTIOND_SANITIZED=1 \
	    python3 -m unittest discover -s tests/integration -p 'test_*.py'

test: deps
	$(MAKE) unit
	$(MAKE) integration
	$(MAKE) test-asan

# what building and running need, not the test tools (make test installs those)
# DEMO=0: the demo tenant starts empty instead of holding the sample shop
DEMO ?= 1
run:
	@$(MAKE) --no-print-directory DEPS_LEVEL=run $(B)/retentiond
	DEMO=$(DEMO) scripts/run.sh

bench: deps $(B)/retentiond
	scripts/install-deps.sh bench
	python3 bench/bench.py

install: $(B)/retentiond
	install -D -m 0755 $(B)/retentiond $(DESTDIR)$(BINDIR)/retentiond
	install -D -m 0644 scripts/systemd/retentiond.service $(DESTDIR)$(PREFIX)/lib/systemd/system/retentiond.service
	install -D -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/retentiond/README.md

clean:
	rm -rf build

-include $(shell find $(B)/obj $(B)/asan -name '*.d' 2>/dev/null)

# --- fuzzing and soak (tests/fuzz, tests/soak.py) ---
#   make fuzz   builds $(B)/fuzz/fuzz_ingest: libFuzzer + ASan + UBSan over the request parsers
#               (domain + platform sources, no database)
#   make soak   the fuzzer for FUZZ_SECONDS (60), then tests/soak.py: SOAK_SECONDS (600) of mixed
#               load against a real server with a fault injected every minute
FUZZ_SRCS := src/domain/model.c src/domain/batch.c src/platform/shopify.c src/platform/woocommerce.c \
             src/platform/signature.c src/util.c src/log.c
FUZZ_SECONDS ?= 60

$(B)/fuzz/fuzz_ingest: tests/fuzz/fuzz_ingest.c $(FUZZ_SRCS) scripts/install-deps.sh
	@scripts/install-deps.sh fuzz
	@mkdir -p $(B)/fuzz
	clang -std=gnu17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	    -fno-omit-frame-pointer -Iinclude $(shell pkg-config --cflags jansson libcrypto) \
	    tests/fuzz/fuzz_ingest.c $(FUZZ_SRCS) -o $@ $(shell pkg-config --libs jansson libcrypto) -pthread -lm

fuzz: $(B)/fuzz/fuzz_ingest

soak: $(B)/fuzz/fuzz_ingest $(B)/retentiond
	@mkdir -p $(B)/fuzz/corpus
	$(B)/fuzz/fuzz_ingest -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -print_final_stats=1 \
	    -artifact_prefix=$(B)/fuzz/ $(B)/fuzz/corpus tests/fuzz/seeds
	RETENTIOND_BIN=$(abspath $(B))/retentiond python3 tests/soak.py
