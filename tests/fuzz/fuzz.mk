# tests/fuzz/fuzz.mk — libFuzzer harnesses (tests/fuzz/README.md), included by the Makefile.
#   make fuzz [FUZZ_SECONDS=600]   build every tests/fuzz/fuzz_*.c, run each for FUZZ_SECONDS
#   make fuzz-build                only build them (FUZZ_BUILD/fuzz/fuzz_<name>)
# The harnesses link the same libsegx/libtrain sources, compiled by clang into FUZZ_BUILD with
# -fsanitize=fuzzer-no-link,address,undefined (a build dir of its own: never build/ or build-san/).
FUZZ_BUILD   ?= build-fuzz
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 600
FUZZ_SAN     := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_NAMES   := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
# the trainer's loaders live in trainer/run, trainer/data and trainer/io; the rest of libtrain is not needed
FUZZ_TRAIN_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(wildcard trainer/run/*.c trainer/data/*.c trainer/io/safetensors.c))

.PHONY: fuzz fuzz-build fuzz-harnesses
fuzz-build:
	@command -v $(FUZZ_CC) >/dev/null || { echo "make fuzz: $(FUZZ_CC) not found (scripts/install-deps installs clang)"; exit 2; }
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) SAN=1 SAN_ON="$(FUZZ_SAN)" WARN=-w CUDA=0 \
	    OPT=-O1 TRAIN_OPT=-O1 fuzz-harnesses
fuzz: fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run $(FUZZ_BUILD)/fuzz $(FUZZ_ONLY)

# (inside the sub-make above: BUILD is FUZZ_BUILD and CC is clang)
fuzz-harnesses: $(FUZZ_NAMES:%=$(BUILD)/fuzz/fuzz_%)
$(BUILD)/libtrain-io.a: $(FUZZ_TRAIN_OBJS)
	@rm -f $@; ar rcs $@ $^
$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(BUILD)/libsegx.a $(BUILD)/libtrain-io.a
	@mkdir -p $(@D)
	$(if $(V),,@echo "  FUZZ $@";)$(CC) $(CFLAGS_ORCH) -fsanitize=fuzzer $< -o $@ $(BUILD)/libsegx.a $(BUILD)/libtrain-io.a \
	    $(LIBS_ORCH) $(LIBS_TRAIN)
