// tests/orchestrator/test_array.c — job-array tasks ("ARRAYID_TASK", as segx submit --array
// records them) are found in what slurmctld lists: a started task by its own record, a task still
// waiting (throttle, dependency) inside its array's pending record "A_[2-4,7%2]".
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "orchestrator/backend/slurm_util.h"
#include <stdio.h>
#include <string.h>

static SlurmJobInfo job(const char *id, const char *state)
{
    SlurmJobInfo j;
    memset(&j, 0, sizeof j);
    snprintf(j.job_id, sizeof j.job_id, "%s", id);
    snprintf(j.state, sizeof j.state, "%s", state);
    snprintf(j.reason, sizeof j.reason, "%s", "None");
    j.exit_status = strcmp(state, "COMPLETED") == 0 ? 0 : -1;
    return j;
}

static void test_tasks_map_to_their_records(void **state)
{
    (void)state;
    SlurmJobInfo jobs[] = {job("7_[2-4,7%2]", "PENDING"), job("7_0", "RUNNING"), job("7_1", "COMPLETED"),
                           job("8_[0-1]", "PENDING"), job("70", "RUNNING")};
    const char *ids[] = {"7_0", "7_1", "7_2", "7_4", "7_5", "7_7", "8_1", "8_2", "70", "7"};
    JobStatus out[10];
    char err[256];
    assert_int_equal(slurm_match_jobs(jobs, 5, ids, 10, out, err, sizeof err), 0);
    const JobState want[] = {JOB_RUNNING, JOB_COMPLETED, JOB_PENDING, JOB_PENDING, JOB_UNKNOWN, JOB_PENDING,
                             JOB_PENDING, JOB_UNKNOWN, JOB_RUNNING, JOB_UNKNOWN};
    for (int i = 0; i < 10; i++) {
        if (out[i].state != want[i])
            fail_msg("%s: state %s, want %s", ids[i], job_state_name(out[i].state), job_state_name(want[i]));
        assert_string_equal(out[i].job_id, ids[i]);   // the task's own id, not the array record's
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_tasks_map_to_their_records)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
