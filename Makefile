# segx: one build for everything.
#   make               bin/segx and bin/segx-train
#   make config        re-detect optional parts (MPI, libslurm, CUDA/cuDNN/NCCL, ...) and print them
#   make test          build and run every test (unit + integration); SAN=1 builds them with ASan/UBSan
#   make bench         run the benchmarks in bench/ (by hand; figures go to bench/RESULTS.md)
#   make fuzz          libFuzzer harnesses (clang, ASan/UBSan), each for FUZZ_SECONDS (default 600)
#   make valgrind      orchestrator unit tests + a short CLI flow under valgrind: any invalid
#                      access or definite leak fails (tests/valgrind; suppressions: tests/valgrind.supp)
#   make install       PREFIX=/usr/local DESTDIR=: segx, segx-train, templates (share/segx), man pages
#                      (help2man, from each command's --help), bash completion; make uninstall
# Variables: BUILD=dir (objects), SAN=1, CUDA=auto|0|1, V=1, DEVELOPER=1 (warnings are errors; scripts/test
# sets it), PREFIX, DESTDIR; CFLAGS/CPPFLAGS/LDFLAGS given by the user are added after the project's.
.DEFAULT_GOAL := all
SAN  ?= 0
CUDA ?= auto
ifeq ($(SAN),1)
BUILD ?= build-san
else
BUILD ?= build
endif
ifeq ($(BUILD),build)
BINDIR := bin
else
BINDIR := $(BUILD)/bin
endif

CC ?= cc
ifeq ($(CC),cc)
CC := gcc
endif

# --- configuration (try-compile, see scripts/configure) ---------------------------------
$(BUILD)/config.mk $(BUILD)/config.h: scripts/configure
	@CC=$(CC) scripts/configure $(BUILD) $(CUDA)
-include $(BUILD)/config.mk

.PHONY: all config test tests bench valgrind clean install-deps install uninstall man
all: $(BINDIR)/segx $(if $(wildcard trainer/main.c),$(BINDIR)/segx-train)

config:
	@CC=$(CC) scripts/configure $(BUILD) $(CUDA)

# -Werror for developers and CI only: a user's compiler may warn about things ours does not
DEVELOPER ?= 0
WERROR   := $(if $(filter 1,$(DEVELOPER)),-Werror)
WARN     := -Wall -Wextra $(WERROR) -Wshadow -Wno-unused-parameter
BASE     := -std=c17 -g -D_GNU_SOURCE -pthread -I. -I$(BUILD) $(WARN) -MMD -MP
OPT      ?= -O2
TRAIN_OPT ?= -O3 -fno-trapping-math
SAN_ON   := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
SANFLAGS := $(if $(filter 1,$(SAN)),$(SAN_ON))
CFLAGS_ORCH  := $(BASE) $(OPT) $(SANFLAGS)
CFLAGS_TRAIN := $(BASE) $(TRAIN_OPT) $(SANFLAGS) $(BLAS_CFLAGS) $(MPI_CFLAGS) $(CUDA_CFLAGS)
# --as-needed: each binary keeps only the libraries it calls (segx-train no SQLite, segx no BLAS)
LDFLAGS_ALL := -pthread $(SANFLAGS) -Wl,--as-needed $(LDFLAGS)
LIBS_ORCH  := -ljansson -lsqlite3 -lcrypto $(SLURM_LIBS) $(MHD_LIBS) $(CURL_LIBS) -lpng -lz -lm
LIBS_TRAIN := -ljansson -lcrypto -lpng -lturbojpeg -lz $(BLAS_LIBS) $(DNNL_LIBS) $(MPI_LIBS) $(CUDA_LIBS) -lm

# --- sources: every .c in a module folder belongs to its library; main.c is the program --
ORCH_SRCS  := $(filter-out orchestrator/cmd/main.c,$(wildcard orchestrator/*.c orchestrator/*/*.c db/*.c web/*.c))
TRAIN_SRCS := $(filter-out trainer/main.c,$(wildcard trainer/*.c trainer/*/*.c))
TRAIN_CU   := $(if $(filter 1,$(SEGX_HAVE_CUDA)),$(wildcard trainer/*.cu trainer/*/*.cu))
ORCH_OBJS  := $(ORCH_SRCS:%.c=$(BUILD)/%.o) $(BUILD)/gen/schema_sql.o $(if $(wildcard web/static/*),$(BUILD)/gen/web_static.o)
TRAIN_OBJS := $(TRAIN_SRCS:%.c=$(BUILD)/%.o) $(TRAIN_CU:%.cu=$(BUILD)/%.cu.o)

# sm_70 (Volta) is gone: CUDA 13's nvcc rejects compute_70 ("Unsupported gpu architecture").
NVCC_ARCH ?= -gencode arch=compute_75,code=sm_75 \
             -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
             -gencode arch=compute_90,code=compute_90
comma := ,
NVCCFLAGS := -O3 -std=c++17 -I. -I$(BUILD) $(NVCC_ARCH) -MMD -MP $(if $(WERROR),-Werror all-warnings) \
             -Xcompiler -Wall,-Wextra$(if $(WERROR),$(comma)-Werror)

$(BUILD)/orchestrator/%.o $(BUILD)/db/%.o $(BUILD)/web/%.o: OBJ_CFLAGS = $(CFLAGS_ORCH)
$(BUILD)/trainer/%.o: OBJ_CFLAGS = $(CFLAGS_TRAIN)
$(BUILD)/tests/orchestrator/%.o: OBJ_CFLAGS = $(CFLAGS_ORCH)
$(BUILD)/tests/trainer/%.o: OBJ_CFLAGS = $(CFLAGS_TRAIN)

$(BUILD)/%.o: %.c $(BUILD)/config.h
	@mkdir -p $(@D)
	$(if $(V),,@echo "  CC  $<";)$(CC) $(OBJ_CFLAGS) $(CPPFLAGS) $(CFLAGS) -c $< -o $@
$(BUILD)/%.cu.o: %.cu $(BUILD)/config.h
	@mkdir -p $(@D)
	$(if $(V),,@echo "  NVCC $<";)$(NVCC) $(NVCCFLAGS) -c $< -o $@

# db/schema.sql compiled into the binary as the C string db_schema_sql.
$(BUILD)/gen/schema_sql.c: db/schema.sql
	@mkdir -p $(@D)
	@{ echo 'const char db_schema_sql[] ='; sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$$/\\n"/' $<; echo ';'; } >$@
# web/static/NAME.EXT compiled into the binary as the C string web_static_NAME_EXT (segx serve);
# '?' escaped so that no trigraph forms.
$(BUILD)/gen/web_static.c: $(wildcard web/static/*)
	@mkdir -p $(@D)
	@for f in $^; do n=$$(basename $$f | tr '.-' '__'); echo "const char web_static_$$n[] ="; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/?/\\?/g' -e 's/^/"/' -e 's/$$/\\n"/' $$f; echo ';'; done >$@
$(BUILD)/gen/%.o: $(BUILD)/gen/%.c
	$(if $(V),,@echo "  CC  $<";)$(CC) $(CFLAGS_ORCH) -c $< -o $@

$(BUILD)/libsegx.a: $(ORCH_OBJS)
	@rm -f $@; ar rcs $@ $^
$(BUILD)/libtrain.a: $(TRAIN_OBJS)
	@rm -f $@; ar rcs $@ $^

$(BINDIR)/segx: $(BUILD)/orchestrator/cmd/main.o $(BUILD)/libsegx.a
	@mkdir -p $(@D)
	$(if $(V),,@echo "  LD  $@";)$(CC) $(LDFLAGS_ALL) $^ -o $@ $(LIBS_ORCH)
$(BINDIR)/segx-train: $(BUILD)/trainer/main.o $(BUILD)/libtrain.a
	@mkdir -p $(@D)
	$(if $(V),,@echo "  LD  $@";)$(CC) $(LDFLAGS_ALL) $^ -o $@ $(LIBS_TRAIN) $(if $(TRAIN_CU),-lstdc++)

# --- tests: tests/orchestrator/test_*.c link libsegx, tests/trainer/test_*.c link libtrain --
ORCH_TESTS  := $(patsubst %.c,$(BUILD)/%,$(wildcard tests/orchestrator/test_*.c))
TRAIN_TESTS := $(patsubst %.c,$(BUILD)/%,$(wildcard tests/trainer/test_*.c))
$(BUILD)/tests/orchestrator/test_%: $(BUILD)/tests/orchestrator/test_%.o $(BUILD)/libsegx.a
	$(if $(V),,@echo "  LD  $@";)$(CC) $(LDFLAGS_ALL) $^ -o $@ $(LIBS_ORCH) -lcmocka
$(BUILD)/tests/trainer/test_%: $(BUILD)/tests/trainer/test_%.o $(BUILD)/libtrain.a
	$(if $(V),,@echo "  LD  $@";)$(CC) $(LDFLAGS_ALL) $^ -o $@ $(LIBS_TRAIN) $(if $(TRAIN_CU),-lstdc++) -lcmocka

tests: all $(ORCH_TESTS) $(TRAIN_TESTS)
test: tests
	@SEGX_BIN=$(abspath $(BINDIR)) SEGX_SAN=$(SAN) tests/run $(BUILD)

bench: all
	bench/run

# make fuzz [FUZZ_SECONDS=600]: libFuzzer harnesses under ASan/UBSan (tests/fuzz/README.md)
include tests/fuzz/fuzz.mk

valgrind: all $(ORCH_TESTS)
	@[ "$(SAN)" != 1 ] || { echo "make valgrind: ASan and valgrind do not mix; run it without SAN=1"; exit 2; }
	tests/valgrind $(BUILD) $(BINDIR)

install-deps:
	scripts/install-deps

# --- install: PREFIX/bin, PREFIX/share/segx/templates (an installed segx finds them from its own
# path), one man page per command (help2man from the --help text), bash completion ---------------
PREFIX  ?= /usr/local
MANDIR  := $(BUILD)/man
man: all
	@scripts/gen-man $(BINDIR) $(MANDIR)
install: all man
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/segx $(DESTDIR)$(PREFIX)/share/man/man1 \
	    $(DESTDIR)$(PREFIX)/share/bash-completion/completions
	install -m 755 $(BINDIR)/segx $(DESTDIR)$(PREFIX)/bin/segx
	$(if $(wildcard trainer/main.c),install -m 755 $(BINDIR)/segx-train $(DESTDIR)$(PREFIX)/bin/segx-train)
	rm -rf $(DESTDIR)$(PREFIX)/share/segx/templates && cp -R templates $(DESTDIR)$(PREFIX)/share/segx/templates
	install -m 644 $(MANDIR)/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 644 scripts/segx-completion.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/segx
uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/segx $(DESTDIR)$(PREFIX)/bin/segx-train \
	    $(DESTDIR)$(PREFIX)/share/bash-completion/completions/segx $(DESTDIR)$(PREFIX)/share/man/man1/segx.1 \
	    $(DESTDIR)$(PREFIX)/share/man/man1/segx-*.1
	rm -rf $(DESTDIR)$(PREFIX)/share/segx

clean:
	rm -rf build build-san bin

.SECONDARY:
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
