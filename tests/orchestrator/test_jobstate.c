// tests/orchestrator/test_jobstate.c — the one job-state table (orchestrator/backend/jobstate.h):
// its SQL lists and every state list in db/schema.sql agree with its sets, and its exit codes are
// the trainer's.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "db/db.h"
#include "orchestrator/backend/jobstate.h"
#include "trainer/train.h"   // TRAIN_EXIT_* (an enum: no trainer code is linked)

// The states named in an SQL list "('a', 'b', ...)" as a bit set over JobState; -1 when a name is
// not a state or the text is not such a list.
static long sql_list_states(const char *list, const char **end)
{
    const char *p = list;
    if (*p++ != '(') return -1;
    long bits = 0;
    for (;;) {
        while (*p == ' ') p++;
        if (*p++ != '\'') return -1;
        const char *q = strchr(p, '\'');
        if (!q) return -1;
        char name[32];
        if ((size_t)(q - p) >= sizeof name) return -1;
        memcpy(name, p, (size_t)(q - p));
        name[q - p] = 0;
        JobState s;
        if (job_state_parse(name, &s) < 0) return -1;
        bits |= 1L << s;
        p = q + 1;
        while (*p == ' ') p++;
        if (*p == ')') { if (end) *end = p + 1; return bits; }
        if (*p++ != ',') return -1;
    }
}

static long set_states(unsigned set)
{
    long bits = 0;
    for (int s = 0; s < JOB_NSTATES; s++)
        if (job_state_in((JobState)s, set)) bits |= 1L << s;
    return bits;
}

static void test_sql_lists_match_the_table(void **state)
{
    (void)state;
    assert_int_equal(sql_list_states(JOB_SQL_ACTIVE, NULL), set_states(JOB_SET_ACTIVE));
    assert_int_equal(sql_list_states(JOB_SQL_UNSETTLED, NULL), set_states(JOB_SET_UNSETTLED));
    assert_int_equal(sql_list_states(JOB_SQL_FAILED, NULL), set_states(JOB_SET_FAILED));
    // and the sets are what their comments say
    assert_true(job_state_in(JOB_RUNNING, JOB_SET_ACTIVE) && !job_state_in(JOB_UNKNOWN, JOB_SET_ACTIVE));
    assert_true(job_state_in(JOB_UNKNOWN, JOB_SET_UNSETTLED) && !job_state_in(JOB_PLANNED, JOB_SET_UNSETTLED));
    assert_true(job_state_is_final(JOB_CANCELLED) && !job_state_is_final(JOB_PREEMPTED));
    assert_true(job_state_in(JOB_PREEMPTED, JOB_SET_RERUNNABLE) && !job_state_in(JOB_COMPLETED, JOB_SET_RERUNNABLE));
    assert_true(job_state_in(JOB_CANCELLED, JOB_SET_UNSUCCESSFUL) && !job_state_in(JOB_CANCELLED, JOB_SET_FAILED));
    assert_true(job_state_in(JOB_PLANNED, JOB_SET_OPEN) && !job_state_in(JOB_PREEMPTED, JOB_SET_OPEN));
    for (int s = 0; s < JOB_NSTATES; s++) {   // every state settles exactly one way
        int unsettled = job_state_in((JobState)s, JOB_SET_UNSETTLED), final = job_state_is_final((JobState)s);
        assert_false(unsettled && final);
        JobState back;
        assert_int_equal(job_state_parse(job_state_name((JobState)s), &back), 0);
        assert_int_equal(back, s);
    }
    assert_int_equal(job_state_parse("RUNNING", &(JobState){0}), -1);
    assert_false(job_state_name_in("no-such-state", ~0u));
}

// Every "state IN (...)" / "state NOT IN (...)" list of job-state names in the schema (its views)
// is one of the table's sets.
static void test_schema_lists_are_sets(void **state)
{
    (void)state;
    const unsigned sets[] = {JOB_SET_ACTIVE, JOB_SET_UNSETTLED, JOB_SET_FINAL, JOB_SET_FAILED, JOB_SET_UNSUCCESSFUL,
                             JOB_SET_RERUNNABLE, JOB_SET_OPEN};
    int lists = 0;
    for (const char *p = db_schema_sql; (p = strstr(p, "IN ('")); p++) {
        const char *end;
        long bits = sql_list_states(p + 3, &end);
        if (bits < 0) continue;   // a list of other names (not job states)
        lists++;
        int found = 0;
        for (size_t i = 0; i < sizeof sets / sizeof *sets; i++) found |= bits == set_states(sets[i]);
        if (!found) fail_msg("db/schema.sql: state list %.*s is none of jobstate.h's sets", (int)(end - p - 3), p + 3);
    }
    assert_true(lists >= 1);   // the views do filter on states: the scan found them
}

static void test_exit_codes(void **state)
{
    (void)state;
    assert_int_equal(JOB_EXIT_OK, TRAIN_EXIT_OK);
    assert_int_equal(JOB_EXIT_ERROR, TRAIN_EXIT_ERROR);
    assert_int_equal(JOB_EXIT_USAGE, TRAIN_EXIT_USAGE);
    assert_int_equal(JOB_EXIT_REQUEUE, TRAIN_EXIT_REQUEUE);
    assert_int_equal(job_state_from_exit(0), JOB_COMPLETED);
    assert_int_equal(job_state_from_exit(TRAIN_EXIT_REQUEUE), JOB_PREEMPTED);
    assert_int_equal(job_state_from_exit(1), JOB_FAILED);
    assert_int_equal(job_state_from_exit(137), JOB_FAILED);
    assert_string_equal(job_exit_name(99), "requeue");
    assert_null(job_exit_name(3));
}

static void test_eval_state(void **state)
{
    (void)state;
    assert_int_equal(job_eval_state(1, 0, 1, 0), JOB_COMPLETED);
    assert_int_equal(job_eval_state(1, 2, 1, 0), JOB_FAILED);
    assert_int_equal(job_eval_state(0, 0, 1, 1), JOB_CANCELLED);    // afterok can never be met
    assert_int_equal(job_eval_state(0, 0, 1, -1), JOB_CANCELLED);
    assert_int_equal(job_eval_state(0, 0, 1, 0), JOB_UNKNOWN);      // train ok, eval not done yet
    assert_int_equal(job_eval_state(0, 0, 0, 0), JOB_UNKNOWN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sql_lists_match_the_table),
        cmocka_unit_test(test_schema_lists_are_sets),
        cmocka_unit_test(test_exit_codes),
        cmocka_unit_test(test_eval_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
