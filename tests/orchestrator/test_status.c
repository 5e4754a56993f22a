// tests/orchestrator/test_status.c — segx status's table (status_print) on hand-made rows: the
// parameters that vary and their values, compared with what jansson reads from the same params
// (status takes them from the stored canonical text without parsing every object), and the
// progress of settled, collected attempts from the DB.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "db/db.h"
#include "orchestrator/plan.h"
#include "orchestrator/submit.h"
#include "tests/orchestrator/sql_helpers.h"

// Params as stored: canonical (jansson, sorted, compact) except the last, written by hand (an old
// or edited row), which status must read the same.
static const char *const PARAMS[] = {
    "{\"batch_per_gpu\":8,\"epochs\":3,\"gpus\":1,\"lr\":0.1,\"model\":\"unet\",\"note\":\"a \\\"q\\\" \\\\ \\u00e9\",\"opts\":{\"x\":[1,2]},\"seed\":1}",
    "{\"batch_per_gpu\":8,\"epochs\":3,\"gpus\":2,\"lr\":0.1,\"model\":\"unet\",\"note\":\"plain\",\"opts\":{\"x\":[1,2]},\"seed\":1}",
    "{\"batch_per_gpu\":8,\"epochs\":3,\"flag\":true,\"gpus\":1,\"lr\":1e-05,\"model\":\"u,n}et\",\"opts\":{\"x\":[1,3]},\"seed\":2}",
    "{ \"seed\": 3, \"model\": \"cnn\", \"gpus\": 4, \"batch_per_gpu\": 8, \"epochs\": 3, \"lr\": 0.1, \"extra\": null }"};
#define NCELLS 4

// The table status_print writes, as JSON (one object per row).
static json_t *status_json(sqlite3 *db)
{
    char path[] = "/tmp/segx-test-status-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w+");
    char err[512];
    if (status_print(db, 1, "json", f, err, sizeof err) < 0) fail_msg("%s", err);
    fflush(f);
    rewind(f);
    json_error_t je;
    json_t *j = json_loadf(f, 0, &je);
    fclose(f);
    unlink(path);
    if (!json_is_array(j)) fail_msg("status --format json is not a list: %s", je.text);
    return j;
}

static void test_varying_params_as_jansson_reads_them(void **state)
{
    (void)state;
    char path[] = "/tmp/segx-test-status-db-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    unlink(path);
    sqlite3 *db;
    char err[512];
    assert_int_equal(db_open(path, DB_CREATE, &db, err, sizeof err), 0);
    execf(db, "INSERT INTO experiments(id, name, spec_text, run_root, created_at, updated_at) VALUES (1, 'e', '{}', '/nonexistent', 0, 0)");
    for (int i = 0; i < NCELLS; i++)
        execf(db, "INSERT INTO cells(id, experiment_id, key, params, group_key, scaling_key, created_at, state) "
                  "VALUES (%d, 1, 'k%011d', %Q, 'g', 's', 0, %Q)", i + 1, i, PARAMS[i], i == 1 ? "completed" : "planned");
    // cell 2 completed and collected: 2 epochs stored (line 3 has no epoch), so "epoch 2/3" from the DB
    execf(db, "INSERT INTO attempts(id, cell_id, attempt, backend, state, run_dir, ingest_sig) "
              "VALUES (1, 2, 1, 'local', 'completed', '/nonexistent/run', 'sig')");
    execf(db, "INSERT INTO epochs(attempt_id, line, epoch) VALUES (1, 1, 1), (1, 2, 2), (1, 3, NULL)");
    json_t *rows = status_json(db);
    assert_int_equal(json_array_size(rows), NCELLS);
    // the reference: plan_varying_keys over the parsed params, values as jansson has them
    json_t *parsed[NCELLS];
    for (int i = 0; i < NCELLS; i++) assert_non_null(parsed[i] = json_loads(PARAMS[i], 0, NULL));
    const char *vary[24];
    size_t nv = plan_varying_keys(parsed, NCELLS, vary, 24);
    assert_true(nv >= 6);   // gpus, lr, model, note, opts, seed, flag, extra
    json_t *row0 = json_array_get(rows, 0);
    for (size_t j = 0; j < nv; j++) {
        if (!json_object_get(row0, vary[j])) fail_msg("column '%s' missing", vary[j]);
        for (int i = 0; i < NCELLS; i++) {
            json_t *want = json_object_get(parsed[i], vary[j]), *got = json_object_get(json_array_get(rows, i), vary[j]);
            if (!want) { if (got && !json_is_null(got)) fail_msg("row %d %s: expected no value", i, vary[j]); continue; }
            if (json_is_object(want) || json_is_array(want) || json_is_boolean(want) || json_is_null(want)) {
                char *w = json_dumps(want, JSON_ENCODE_ANY | JSON_COMPACT);
                if (!json_is_string(got) || strcmp(json_string_value(got), w)) fail_msg("row %d %s: expected %s", i, vary[j], w);
                free(w);
            } else if (json_is_number(want)) {
                if (!json_is_number(got) || json_number_value(got) != json_number_value(want))
                    fail_msg("row %d %s: expected %g", i, vary[j], json_number_value(want));
            } else if (!json_equal(want, got)) {
                fail_msg("row %d %s: expected '%s'", i, vary[j], json_string_value(want));
            }
        }
    }
    // batch_per_gpu and epochs are the same everywhere: not shown
    assert_null(json_object_get(row0, "batch_per_gpu"));
    assert_null(json_object_get(row0, "epochs"));
    assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 1), "progress")), "epoch 2/3");
    for (int i = 0; i < NCELLS; i++) json_decref(parsed[i]);
    json_decref(rows);
    db_close(db);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_varying_params_as_jansson_reads_them),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
