// tests/orchestrator/test_units.c — time limits and memory sizes read once, by Slurm's rules
// (orchestrator/util/units.h), and the callers that used to have parsers of their own: cluster
// profiles (cluster_mem_mb), #SBATCH --mem (slurm_script_parse), spec times (spec_parse_time)
// and #SBATCH --time (slurm_time_minutes).
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "orchestrator/backend/slurm_util.h"
#include "orchestrator/cluster.h"
#include "orchestrator/spec.h"
#include "orchestrator/util/units.h"

// --mem as an #SBATCH line reads it: MB, or -1 when the script is refused.
static long sbatch_mem(const char *v)
{
    char path[] = "/tmp/segx-units-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "#!/bin/bash\n#SBATCH --mem=%s\necho hi\n", v);
    fclose(f);
    SlurmOpts o;
    char *text = NULL, err[512];
    int rc = slurm_script_parse(path, &o, &text, err, sizeof err);
    free(text);
    unlink(path);
    return rc < 0 ? -1 : o.mem_mb;
}

// The two parsers segx had disagreed: a cluster profile's mem_per_gpu "16GB" was 16384 MB, the
// same text in a job script was refused; "1025K" was 1 MB in one and 2 MB in the other. Slurm
// (str_to_mbytes) says 16384 and 2. Now both are units_mem_mb.
static void test_mem_disagreement_fixed(void **state)
{
    (void)state;
    const char *cases[] = {"16GB", "16G", "16gb", "1025K", "1024K", "1K", "512", "512M", "512MB", "2T"};
    const long want[] = {16384, 16384, 16384, 2, 1, 1, 512, 512, 512, 2097152};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        assert_int_equal(units_mem_mb(cases[i]), want[i]);
        assert_int_equal(cluster_mem_mb(cases[i]), want[i]);
        assert_int_equal(sbatch_mem(cases[i]), want[i]);
    }
}

static void test_mem_refused(void **state)
{
    (void)state;
    // what sbatch refuses: fractions, signs, blanks, a bare B, other units, trailing text
    const char *bad[] = {"", "G", "1.5G", ".5G", "-1G", "+1G", " 1G", "1G ", "100B", "1X", "1GBB", "1GiB",
                         "1MBx", "inf", "nan", "1e3", "99999999999999G", "2000000T", NULL};
    for (const char *const *b = bad; *b; b++) {
        if (units_mem_mb(*b) != -1) fail_msg("units_mem_mb(\"%s\") = %ld, want -1", *b, units_mem_mb(*b));
        assert_int_equal(cluster_mem_mb(*b), -1);
        if (**b && !strchr(*b, ' ')) assert_int_equal(sbatch_mem(*b), -1);   // (the script reader trims blanks)
    }
    assert_int_equal(units_mem_mb(NULL), -1);
    assert_int_equal(units_mem_mb("0"), 0);          // Slurm: all of the node's memory
    assert_int_equal(cluster_mem_mb("0"), -1);       // a profile's mem_per_gpu must be a size
    assert_int_equal(units_mem_mb("1024G"), 1048576);
}

static void test_time_one_reader(void **state)
{
    (void)state;
    const char *ok[] = {"30", "10:30", "01:30:00", "2-00:00:00", "1-12", "1-2:30", "0:0:1", "120:30", "100:00:00",
                        "3650-00:00:00"};
    const long secs[] = {1800, 630, 5400, 172800, 129600, 95400, 1, 7230, 360000, UNITS_MAX_TIME_S};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        assert_int_equal(units_time_s(ok[i]), secs[i]);
        assert_int_equal(spec_parse_time(ok[i]), secs[i]);
        int unl = -1;
        assert_int_equal(slurm_time_minutes(ok[i], &unl), (secs[i] + 59) / 60);
        assert_int_equal(unl, 0);
    }
    const char *bad[] = {"", "x", "1h", "1:2:3:4", "10:", "-1", "1-", "99:99:99", "1:60:00", "10:60", "1-24:00:00",
                         "3651-00:00:00", "99999999999999999999", "1 :00", NULL};
    for (const char *const *b = bad; *b; b++) {
        assert_int_equal(units_time_s(*b), -1);
        assert_int_equal(spec_parse_time(*b), -1);
        int unl;
        assert_int_equal(slurm_time_minutes(*b, &unl), -1);
    }
    int unl = 0;
    assert_int_equal(slurm_time_minutes("UNLIMITED", &unl), 0);
    assert_int_equal(unl, 1);
    assert_int_equal(units_time_s("UNLIMITED"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mem_disagreement_fixed),
        cmocka_unit_test(test_mem_refused),
        cmocka_unit_test(test_time_one_reader),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
