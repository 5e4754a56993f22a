// tests/fuzz/fuzz_logparse.c — the regex log adapter (`segx logparse`, orchestrator/cmd/cmd_logparse.c)
// run as the command: the input's first line is --rules (a JSON object of named patterns), the rest
// is the trainer's log. Patterns with back-references are skipped: glibc's regexec backtracks
// exponentially on them, which is the pattern's cost, not segx's. Property: exit 0, 1 or 2.
#include "orchestrator/cmd/commands.h"
#include "tests/fuzz/fuzz.h"

static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    if (!(devnull = fopen("/dev/null", "w"))) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    if (!nl || nl - data > 512) return 0;
    char *rules = fuzz_text(data, (size_t)(nl - data));
    if (!rules) return 0;
    for (const char *p = rules; *p; p++) {   // a run of backslashes (JSON-escaped or not) then 1-9
        if (*p != '\\') continue;
        while (*p == '\\') p++;
        if (*p >= '1' && *p <= '9') { free(rules); return 0; }
        if (!*p) break;
    }
    const char *log = fuzz_file("train.log", nl + 1, size - (size_t)(nl + 1 - data));
    char *argv[] = {"logparse", "--rules", rules, "--out", "/dev/null", (char *)log, NULL};
    FILE *err = stderr;   // usage errors are expected: keep them out of the fuzzer's log
    stderr = devnull;
    int rc = cmd_logparse(6, argv);
    stderr = err;
    fuzz_check(rc == 0 || rc == 1 || rc == 2, "exit code %d", rc);
    free(rules);
    return 0;
}
