// tests/fuzz/fuzz_idx.c — the IDX reader for fashion-mnist (trainer/data/fmnist.c idx_read), plain
// and gzip-compressed (zlib reads both). Properties: an error names the file; the data holds the
// product of the dimensions.
#include "trainer/data/data.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file("images.idx", data, size);
    uint8_t *px = NULL;
    int ndim = 0, dims[4] = {0};
    char err[1024] = "";
    if (idx_read(path, &px, &ndim, dims, err, sizeof err) < 0) {
        fuzz_check(px == NULL && strstr(err, path) != NULL, "error does not name the file: '%s'", err);
        return 0;
    }
    fuzz_check(ndim >= 1 && ndim <= 4, "ndim %d", ndim);
    size_t total = 1;
    for (int d = 0; d < ndim; d++) total *= (size_t)dims[d];
    volatile uint8_t sum = 0;
    for (size_t i = 0; i < total; i++) sum += px[i];   // ASan: every byte the dims promise is there
    free(px);
    return 0;
}
