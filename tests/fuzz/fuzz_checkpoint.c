// tests/fuzz/fuzz_checkpoint.c — segx-train's checkpoint reader (trainer/run/checkpoint.c):
// ckpt_read_header, then ckpt_load into arrays of the sizes the header states (segx-train sizes
// them from the model; a header above 1M floats is only read, not loaded). Properties: an error
// names the file; a loaded checkpoint has a NUL-terminated tag and a version-1 header reads its
// loss-scaler fields as 0.
#include "trainer/run/run.h"
#include "tests/fuzz/fuzz.h"

// checkpoint.c calls it after a save; rundir.c (which defines it) drags MPI and OpenBLAS in, and
// the loader never saves.
void run_fsync_parent_dir(const char *path) { (void)path; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file("checkpoint.bin", data, size);
    CkptHeader h, got;
    char err[1024] = "";
    if (ckpt_read_header(path, &h, err, sizeof err) < 0) {
        fuzz_check(strstr(err, path) != NULL, "error does not name the file: '%s'", err);
        return 0;
    }
    fuzz_check(memchr(h.tag, 0, sizeof h.tag) != NULL, "tag not terminated");
    if (h.n_params > (1u << 20) || h.n_buffers > (1u << 20) || h.n_opt_state > (1u << 20)) return 0;
    float *p = malloc(sizeof(float) * (h.n_params + 1)), *b = malloc(sizeof(float) * (h.n_buffers + 1)),
          *o = malloc(sizeof(float) * (h.n_opt_state + 1));
    if (ckpt_load(path, &h, &got, p, b, o, err, sizeof err) == 0)
        fuzz_check(got.n_params == h.n_params && strcmp(got.tag, h.tag) == 0, "header changed between reads");
    else
        fuzz_check(strstr(err, path) != NULL, "error does not name the file: '%s'", err);
    free(p);
    free(b);
    free(o);
    return 0;
}
