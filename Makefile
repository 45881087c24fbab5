# retentiond - build, test, run.
#   make run    install what is missing, build, start a private PostgreSQL if DATABASE_URL is
#               unset, migrate, create a demo tenant and key, serve on $PORT (default 8080)
#   make test   install, build, unit tests (check), integration tests against a throw-away
#               PostgreSQL and the real server; then the same suite under ASan + UBSan
#   make bench  the performance comparisons of README's performance section

CC      ?= gcc
PKGS    := libmicrohttpd jansson libpq libcrypto
CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu17 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wformat=2 \
           -fno-strict-aliasing -pthread -Iinclude -Ibuild/gen
LDLIBS  += -pthread -lm
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin

SRCS := $(sort $(wildcard src/*.c src/*/*.c))
MIGRATIONS := $(sort $(wildcard migrations/*.sql))
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
# everything but main.c, for linking unit tests against the modules they test
LIB_SRCS := $(filter-out src/main.c,$(SRCS))

DEPS_STAMP := build/.deps-$(shell cat scripts/install-deps.sh | cksum | cut -d' ' -f1)

.PHONY: all deps run test unit integration test-asan bench soak fuzz install clean

all: build/retentiond

$(DEPS_STAMP): scripts/install-deps.sh
	@mkdir -p build
	@scripts/install-deps.sh test
	@touch $@

deps: $(DEPS_STAMP)

build/gen/migrations.c: scripts/embed-migrations.sh $(MIGRATIONS)
	@mkdir -p build/gen
	scripts/embed-migrations.sh $(MIGRATIONS) > $@

# --- release build ---
OBJS := $(patsubst src/%.c,build/obj/%.o,$(SRCS)) build/obj/gen/migrations.o
LIB_OBJS := $(filter-out build/obj/main.o,$(OBJS))

build/obj/%.o: src/%.c $(DEPS_STAMP) | build/gen/migrations.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(shell pkg-config --cflags $(PKGS)) -MMD -MP -c $< -o $@

build/obj/gen/migrations.o: build/gen/migrations.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(shell pkg-config --cflags $(PKGS)) -c $< -o $@

build/retentiond: $(OBJS)
	$(CC) $(CFLAGS) -o $@ $^ $(shell pkg-config --libs $(PKGS)) $(LDLIBS)

# --- sanitizer build (separate objects) ---
ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
ASAN_OBJS := $(patsubst src/%.c,build/asan/%.o,$(SRCS)) build/asan/gen/migrations.o

build/asan/%.o: src/%.c $(DEPS_STAMP) | build/gen/migrations.c
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -O2,$(CFLAGS)) $(ASAN_FLAGS) $(shell pkg-config --cflags $(PKGS)) -MMD -MP -c $< -o $@

build/asan/gen/migrations.o: build/gen/migrations.c
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -O2,$(CFLAGS)) $(ASAN_FLAGS) $(shell pkg-config --cflags $(PKGS)) -c $< -o $@

build/asan/retentiond: $(ASAN_OBJS)
	$(CC) $(ASAN_FLAGS) -o $@ $^ $(shell pkg-config --libs $(PKGS)) $(LDLIBS)

# --- unit tests: one check program per suite, linked with the modules ---
build/unit/%: tests/unit/%.c $(LIB_OBJS)
	@mkdir -p build/unit
	$(CC) $(CFLAGS) $(shell pkg-config --cflags check $(PKGS)) $< $(LIB_OBJS) -o $@ \
	    $(shell pkg-config --libs check $(PKGS)) $(LDLIBS)

build/unit-asan/%: tests/unit/%.c $(filter-out build/asan/main.o,$(ASAN_OBJS))
	@mkdir -p build/unit-asan
	$(CC) $(filter-out -O2,$(CFLAGS)) $(ASAN_FLAGS) $(shell pkg-config --cflags check $(PKGS)) $< \
	    $(filter-out build/asan/main.o,$(ASAN_OBJS)) -o $@ $(shell pkg-config --libs check $(PKGS)) $(LDLIBS)

UNIT_BINS := $(patsubst tests/unit/%.c,build/unit/%,$(UNIT_SRCS))
UNIT_ASAN_BINS := $(patsubst tests/unit/%.c,build/unit-asan/%,$(UNIT_SRCS))

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; RD_FIXTURES=tests/fixtures CK_FORK=no $$t; done

integration: build/retentiond
	RETENTIOND_BIN=$(CURDIR)/build/retentiond python3 -m unittest discover -s tests/integration -p 'test_*.py' -v

test-asan: build/asan/retentiond $(UNIT_ASAN_BINS)
	@set -e; for t in $(UNIT_ASAN_BINS); do echo "== $$t (asan)"; RD_FIXTURES=tests/fixtures CK_FORK=no $$t; done
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	RETENTIOND_BIN=$(CURDIR)/build/asan/retentiond RETENTIOND_SANITIZED=1 \
	    python3 -m unittest discover -s tests/integration -p 'test_*.py'

test: deps
	$(MAKE) unit
	$(MAKE) integration
	$(MAKE) test-asan

run: deps build/retentiond
	scripts/run.sh

bench: deps build/retentiond
	scripts/install-deps.sh bench
	python3 bench/bench.py

install: build/retentiond
	install -D -m 0755 build/retentiond $(DESTDIR)$(BINDIR)/retentiond

clean:
	rm -rf build

-include $(shell find build/obj build/asan -name '*.d' 2>/dev/null)
