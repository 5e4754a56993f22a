// tests/orchestrator/test_poll_pace.c — the wait between scheduler polls: the interval while polls
// are quick, doubled after a failed or slow one up to the cap, kept while it is long enough, back to
// the interval after a quick one.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "orchestrator/poll_pace.h"

static void test_pace(void **state)
{
    (void)state;
    PollPace p;
    poll_pace_init(&p, 2);
    assert_true(poll_pace_next(&p, 0.1, 0) == 2);        // quick: the interval
    assert_int_equal(p.slowed, 0);
    assert_true(poll_pace_next(&p, 0.1, 1) == 4);        // failed: doubled
    assert_int_equal(p.slowed, 1);
    assert_true(poll_pace_next(&p, 0.1, 1) == 8);
    assert_true(poll_pace_next(&p, 0.2, 0) == 2);        // answered quickly: back to the interval
    assert_int_equal(p.slowed, 0);
    // a poll of 7.8 s (1,000 jobs through slurmrestd 22.05): 2 -> 4 -> 8 -> 16 -> 32, then kept
    double w = 2;
    for (int i = 0; i < 4; i++) w = poll_pace_next(&p, 7.8, 0);
    assert_true(w == 32);
    assert_true(poll_pace_next(&p, 7.8, 0) == 32);      // 7.8 <= 32/4: no see-saw back to 2
    assert_true(poll_pace_next(&p, 1.0, 0) == 32);      // 1 s is still more than a quarter of 2 s
    assert_true(poll_pace_next(&p, 0.5, 0) == 2);
    for (int i = 0; i < 20; i++) w = poll_pace_next(&p, 0, 1);
    assert_true(w == POLL_PACE_CAP_S);                   // capped
    poll_pace_init(&p, 600);                             // an interval above the cap is kept
    assert_true(poll_pace_next(&p, 0, 1) == 600);
    poll_pace_init(&p, 0);                               // nonsense: 1 s
    assert_true(poll_pace_next(&p, 0, 0) == 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_pace)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
