// tests/fuzz/fuzz_safetensors.c — the safetensors reader segx-train loads PyTorch weights with
// (trainer/io/safetensors.c st_open, st_find, st_read_f32). Properties: an error names the file;
// every tensor of an opened file lies inside it and can be found by its name; reading one either
// fills numel floats or says why (an unsupported dtype).
#include "trainer/io/safetensors.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file("weights.safetensors", data, size);
    StFile *f = NULL;
    char err[1024] = "";
    if (st_open(path, &f, err, sizeof err) < 0) {
        fuzz_check(f == NULL && strstr(err, path) != NULL, "error does not name the file: '%s'", err);
        return 0;
    }
    for (int i = 0; i < f->n; i++) {
        const StTensor *t = &f->t[i];
        fuzz_check(t->begin <= t->end && f->data_start + t->end <= f->size, "tensor '%s' [%zu, %zu) past the end (%zu)",
                   t->name, t->begin, t->end, f->size);
        fuzz_check(st_find(f, t->name) != NULL, "tensor '%s' not found by name", t->name);
        if (t->numel > (1u << 20)) continue;
        float *dst = malloc(sizeof(float) * (t->numel + 1));
        if (st_read_f32(f, t, dst, err, sizeof err) < 0) fuzz_check(err[0], "read failed without a reason");
        free(dst);
    }
    st_close(f);
    return 0;
}
