#!/usr/bin/env bash
# The libFuzzer harnesses (tests/fuzz/) build with clang and run briefly (FUZZ_SMOKE_SECONDS each,
# default 10) over their seed corpora, which hold the inputs of past findings: any crash,
# sanitizer report or broken property fails. `make fuzz` is the long run (bench/RESULTS.md).
. "$(dirname "$0")/lib.sh"
cd "$SEGX_ROOT"
if ! command -v clang >/dev/null; then skip "clang is not installed (scripts/install-deps installs clang and libclang-rt-14-dev)"; done_testing; exit; fi
printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' >"$TEST_TMP/t.c"
if ! clang -fsanitize=fuzzer "$TEST_TMP/t.c" -o "$TEST_TMP/t" 2>"$TEST_TMP/cc.err"; then
  skip "clang cannot link libFuzzer (install libclang-rt-14-dev): $(head -1 "$TEST_TMP/cc.err")"; done_testing; exit
fi
# One fuzz build per build dir pair: build and build-san share build-fuzz, build-x and build-x-san build-x-fuzz.
fb=${SEGX_BUILD:-$SEGX_ROOT/build}; fb=${fb%-san}-fuzz
if make --no-print-directory FUZZ_BUILD="$fb" fuzz-build >"$TEST_TMP/build.log" 2>&1; then
  pass "make fuzz-build ($fb)"
else
  fail "make fuzz-build ($fb)" "$(tail -15 "$TEST_TMP/build.log")"; done_testing; exit
fi
names=$(ls tests/fuzz/fuzz_*.c | sed 's#.*/fuzz_##; s#\.c$##')
for n in $names; do
  check_eq "tests/fuzz/corpus/$n has seeds" yes "$([ -n "$(ls tests/fuzz/corpus/$n 2>/dev/null)" ] && echo yes || echo no)"
  out=$(FUZZ_SECONDS=${FUZZ_SMOKE_SECONDS:-10} FUZZ_WORK="$TEST_TMP/work" tests/fuzz/run "$fb/fuzz" "$n" 2>&1)
  if [ $? -eq 0 ] && grep -q "^$n ok" <<<"$out"; then pass "fuzz_$n: $out"; else fail "fuzz_$n" "$out"; fi
done
done_testing
