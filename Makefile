# uvmq - one Makefile for the broker, its tools, tests and benchmarks.
#
#   make            build build/uvmq (and build/uvmq-bench once bench/ has it)
#   make run        build and start uvmq on its defaults (127.0.0.1:1883)
#   make test       unit + integration tests; ends with "N passed, N failed"
#   make test SAN=1 the same under ASan + UBSan (objects in build/san/)
#   make test TSAN=1 the same under ThreadSanitizer (objects in build/tsan/)
#   make test-full  make test, then 60 s of libFuzzer over the codec and
#                   60 s over auth/'s parsers (make fuzz)
#   make docs       draw docs/modules.png, the folder graph
#                   (scripts/check-layers.sh --dot through graphviz)
#   make clean
#
# Missing Debian packages are installed by scripts/install-deps.sh, which
# runs when pkg-config cannot find a dependency or a test tool is missing.

CC ?= cc
PKGS := libuv openssl sqlite3 libcjson libnghttp2 libargon2
TEST_PKGS := cmocka libmosquitto

ifneq ($(filter-out clean docs,$(or $(MAKECMDGOALS),all)),)
DEPS_OK := $(shell pkg-config --exists $(PKGS) $(TEST_PKGS) && \
	command -v mosquitto_pub >/dev/null && command -v mosquitto_sub >/dev/null && \
	command -v curl >/dev/null && command -v nghttp >/dev/null && \
	command -v mosquitto_passwd >/dev/null && command -v argon2 >/dev/null && echo yes)
ifneq ($(DEPS_OK),yes)
DEPS_RC := $(shell ./scripts/install-deps.sh >&2; echo $$?)
ifneq ($(DEPS_RC),0)
$(error scripts/install-deps.sh failed; see its output above)
endif
endif
endif

ifeq ($(SAN),1)
BUILD := build/san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else ifeq ($(TSAN),1)
BUILD := build/tsan
SANFLAGS := -fsanitize=thread -fno-omit-frame-pointer
else
BUILD := build
SANFLAGS :=
endif

OPT ?= -O2 -g
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow \
	-Wno-unused-parameter -Wstrict-prototypes -Wmissing-prototypes \
	-pthread $(OPT) $(SANFLAGS)
DEP_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
DEP_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm
TEST_CFLAGS := $(shell pkg-config --cflags $(TEST_PKGS) 2>/dev/null)
TEST_LIBS := $(shell pkg-config --libs $(TEST_PKGS) 2>/dev/null)
override CFLAGS := $(CFLAGS_BASE) $(DEP_CFLAGS) -I. $(CFLAGS)
LDFLAGS += $(SANFLAGS) -pthread

# Library sources: every .c in the modules (cli/ and tests/ are programs).
MODULES := common packets router queue storage tls auth broker http
LIB_SRC := $(foreach m,$(MODULES),$(wildcard $(m)/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
LIB := $(BUILD)/libuvmq.a

UNIT_SRC := $(wildcard tests/unit/*/*.c)
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(UNIT_SRC))
HARNESS_SRC := $(wildcard tests/integration/harness/*.c)
HARNESS_OBJ := $(HARNESS_SRC:%.c=$(BUILD)/obj/%.o)
INTEG_SRC := $(wildcard tests/integration/*.c)
INTEG_BIN := $(patsubst tests/integration/%.c,$(BUILD)/tests/integration/%,$(INTEG_SRC))
BENCH_SRC := $(wildcard bench/*.c)
MICRO_SRC := $(wildcard bench/micro/*.c)
MICRO_BIN := $(patsubst bench/micro/%.c,$(BUILD)/bench/micro/%,$(MICRO_SRC))

PROGRAMS := $(BUILD)/uvmq $(if $(BENCH_SRC),$(BUILD)/uvmq-bench)

.PHONY: all run test test-full tests clean fuzz bench format docs
all: $(PROGRAMS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/uvmq: $(BUILD)/obj/cli/uvmq.o $(BUILD)/obj/cli/cli_config.o $(BUILD)/obj/cli/passwd.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(DEP_LIBS)

$(BUILD)/uvmq-bench: $(BENCH_SRC:%.c=$(BUILD)/obj/%.o) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(DEP_LIBS)

# Unit tests may #include the .c they test to reach statics, so they link
# with --allow-multiple-definition. Each links only the modules it depends
# on, so a module's tests build while another module is broken.
UNIT_DEPS_common := common
UNIT_DEPS_packets := common packets
UNIT_DEPS_router := common router
UNIT_DEPS_queue := common packets queue
UNIT_DEPS_storage := common storage
UNIT_DEPS_tls := common tls
UNIT_DEPS_auth := common auth
UNIT_DEPS_broker := $(MODULES)
UNIT_DEPS_http := $(MODULES)
UNIT_DEPS_cli := $(MODULES)
mod_objs = $(foreach m,$(UNIT_DEPS_$(1)),$(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard $(m)/*.c)))
unit_extra = $(if $(filter cli,$(1)),$(BUILD)/obj/cli/cli_config.o)

.SECONDEXPANSION:
$(BUILD)/tests/unit/%: tests/unit/%.c $$(call mod_objs,$$(firstword $$(subst /, ,$$*))) $$(call unit_extra,$$(firstword $$(subst /, ,$$*)))
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(TEST_CFLAGS) -MMD -MP $(LDFLAGS) -Wl,--allow-multiple-definition \
		-o $@ $< $(filter %.o,$^) $(TEST_LIBS) $(DEP_LIBS)

$(BUILD)/tests/integration/%: tests/integration/%.c $(HARNESS_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(TEST_CFLAGS) -Itests/integration -MMD -MP $(LDFLAGS) \
		-o $@ $< $(HARNESS_OBJ) $(LIB) $(TEST_LIBS) $(DEP_LIBS)

$(BUILD)/bench/micro/%: bench/micro/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP $(LDFLAGS) -Wl,--allow-multiple-definition \
		-o $@ $< $(LIB) $(DEP_LIBS)

tests: $(PROGRAMS) $(UNIT_BIN) $(INTEG_BIN)

run: $(BUILD)/uvmq
	./$(BUILD)/uvmq

test: tests
	@BUILD=$(BUILD) SAN=$(SAN) TSAN=$(TSAN) ./tests/run.sh

# The slow tier: everything in `make test`, then FUZZ_TIME seconds of
# libFuzzer over each fuzz target.
test-full: test fuzz

bench: $(PROGRAMS) $(MICRO_BIN)
	./bench/fanout.sh

# libFuzzer, FUZZ_TIME seconds (default 60) per target in FUZZ_TARGETS: pkt
# (the codec, tests/fuzz/fuzz_pkt.c) and auth (the password and ACL file
# parsers and the ACL checks, tests/fuzz/fuzz_auth.c), each seeded from
# tests/fuzz/corpus/<target>. Findings are written to build/fuzz/.
FUZZ_TIME ?= 60
FUZZ_TARGETS ?= pkt auth
FUZZ_CC := clang -std=c11 -D_GNU_SOURCE -g -O1 -I. -fsanitize=fuzzer,address,undefined
FUZZ_SRC_pkt := tests/fuzz/fuzz_pkt.c packets/pkt.c packets/props.c packets/pkt_encode.c \
	common/arena.c common/xmalloc.c common/log.c
FUZZ_SRC_auth := tests/fuzz/fuzz_auth.c auth/acl.c auth/acl_match.c auth/auth_text.c \
	auth/passwd.c common/xmalloc.c common/log.c
FUZZ_LIBS_auth = $(shell pkg-config --cflags --libs openssl libargon2)

build/fuzz/fuzz_%: $$(FUZZ_SRC_$$*) $(wildcard auth/*.h common/*.h packets/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_SRC_$*) $(FUZZ_LIBS_$*) -o $@

fuzz: $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)
	@set -e; for t in $(FUZZ_TARGETS); do \
		mkdir -p build/fuzz/corpus-$$t; \
		echo "fuzz_$$t: $(FUZZ_TIME) s"; \
		(cd build/fuzz && ./fuzz_$$t corpus-$$t ../../tests/fuzz/corpus/$$t \
			-max_total_time=$(FUZZ_TIME)); \
	done

# docs/modules.png: which folder includes which, from the same scan as the
# layering check. graphviz comes from scripts/install-deps.sh --docs when
# dot is missing; the build C dependencies are not needed.
docs:
	@command -v dot >/dev/null 2>&1 || ./scripts/install-deps.sh --docs
	@mkdir -p build/docs
	./scripts/check-layers.sh --dot >build/docs/modules.dot
	dot -Tpng build/docs/modules.dot -o docs/modules.png

format:
	clang-format -i $(LIB_SRC) $(wildcard cli/*.c) $(wildcard */*.h)

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
