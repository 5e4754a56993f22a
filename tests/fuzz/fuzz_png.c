// tests/fuzz/fuzz_png.c — the PNG decoder of the segfolder and cifar datasets
// (trainer/data/png_io.c png_read_u8, on libpng), with and without palette indices kept.
// Properties: an error names the file; w x h x channels bytes are there.
#include "trainer/data/data.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int keep_index = data[0] & 1;
    const char *path = fuzz_file("image.png", data + 1, size - 1);
    uint8_t *px = NULL;
    int w = 0, h = 0, ch = 0;
    char err[1024] = "";
    if (png_read_u8(path, keep_index, &px, &w, &h, &ch, err, sizeof err) < 0) {
        fuzz_check(px == NULL && strstr(err, path) != NULL, "error does not name the file: '%s'", err);
        return 0;
    }
    fuzz_check(w > 0 && h > 0 && (ch == 1 || ch == 3), "w %d h %d channels %d", w, h, ch);
    volatile uint8_t sum = 0;
    for (size_t i = 0; i < (size_t)w * h * ch; i++) sum += px[i];
    free(px);
    return 0;
}
