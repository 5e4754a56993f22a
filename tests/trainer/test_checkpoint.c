// tests/trainer/test_checkpoint.c — checkpoint format versions: version 2 carries the fp16 loss
// scaler (scale, clean-step counter, skipped steps) through save/load; a version-1 file (written
// here byte for byte as segx-train wrote it before) still loads, with those fields 0 ("not stored");
// versions and header sizes this build does not know are refused with a message.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "trainer/run/run.h"

enum { NP = 300, NB = 7, NS = 600 };

static char tmpdir[256], path[512];
static float p[NP], b[NB], o[NS];

static int setup(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/segx-test-ckpt.XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    snprintf(path, sizeof path, "%s/checkpoint.bin", tmpdir);
    for (int i = 0; i < NP; i++) p[i] = (float)i * 0.25f - 3;
    for (int i = 0; i < NB; i++) b[i] = (float)i / 7;
    for (int i = 0; i < NS; i++) o[i] = 1e-6f * (float)(i % 13);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    unlink(path);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    unlink(tmp);
    return rmdir(tmpdir);
}

static void header(CkptHeader *h) {
    memset(h, 0, sizeof *h);
    h->n_params = NP; h->n_buffers = NB; h->n_opt_state = NS;
    h->seed = 3; h->epoch = 1; h->next_batch = 4; h->global_step = 17; h->opt_kind = 1; h->opt_steps = 17;
    h->loss_sum = 2.5; h->loss_count = 4; h->wall_s = 12.5;
    snprintf(h->tag, sizeof h->tag, "unet/synthetic/w8/bn1/b4/ws2/acc1/sgd/seed3");
}

// Writes the file the way a version-N segx-train did: prefix, the first header_bytes of h, arrays, CRC.
static void write_raw(uint32_t version, uint32_t header_bytes, const CkptHeader *h) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    struct { char magic[8]; uint32_t version, header_bytes; } pre;
    memcpy(pre.magic, "SEGXCKPT", 8);
    pre.version = version;
    pre.header_bytes = header_bytes;
    uLong crc = crc32(0, Z_NULL, 0);
    crc = crc32(crc, (const Bytef *)&pre, sizeof pre);
    crc = crc32(crc, (const Bytef *)h, header_bytes);
    crc = crc32(crc, (const Bytef *)p, sizeof p);
    crc = crc32(crc, (const Bytef *)b, sizeof b);
    crc = crc32(crc, (const Bytef *)o, sizeof o);
    uint32_t c32 = (uint32_t)crc;
    assert_int_equal(fwrite(&pre, sizeof pre, 1, f), 1);
    assert_int_equal(fwrite(h, header_bytes, 1, f), 1);
    assert_int_equal(fwrite(p, sizeof p, 1, f), 1);
    assert_int_equal(fwrite(b, sizeof b, 1, f), 1);
    assert_int_equal(fwrite(o, sizeof o, 1, f), 1);
    assert_int_equal(fwrite(&c32, 4, 1, f), 1);
    assert_int_equal(fclose(f), 0);
}

static void test_loss_scale_round_trip(void **state) {
    (void)state;
    char err[1024];
    CkptHeader h, got;
    header(&h);
    h.loss_scale = 2048;              // halved 5 times from 65536
    h.loss_scale_good_steps = 1234;
    h.skipped_steps = 5;
    assert_int_equal(ckpt_save(path, &h, p, b, o, err, sizeof err), 0);
    // the prefix says version 2 with today's header size
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    unsigned char pre[16];
    assert_int_equal(fread(pre, 1, 16, f), 16);
    fclose(f);
    uint32_t version, hb;
    memcpy(&version, pre + 8, 4);
    memcpy(&hb, pre + 12, 4);
    assert_int_equal(version, 2);
    assert_int_equal(hb, sizeof(CkptHeader));

    memset(&got, 0x5a, sizeof got);
    assert_int_equal(ckpt_read_header(path, &got, err, sizeof err), 0);
    assert_true(got.loss_scale == 2048);
    assert_int_equal(got.loss_scale_good_steps, 1234);
    assert_int_equal(got.skipped_steps, 5);

    float p2[NP], b2[NB], o2[NS];
    memset(&got, 0x5a, sizeof got);
    assert_int_equal(ckpt_load(path, &h, &got, p2, b2, o2, err, sizeof err), 0);
    assert_memory_equal(&got, &h, sizeof h);   // every field, the scaler included
    assert_memory_equal(p2, p, sizeof p);
    assert_memory_equal(o2, o, sizeof o);

    // a run without a scaler stores 0 (fp32, bf16, the CPU): the resume keeps its fresh scaler
    header(&h);
    assert_int_equal(ckpt_save(path, &h, p, b, o, err, sizeof err), 0);
    assert_int_equal(ckpt_load(path, &h, &got, p2, b2, o2, err, sizeof err), 0);
    assert_true(got.loss_scale == 0);
    assert_int_equal(got.skipped_steps, 0);
}

static void test_version1_still_loads(void **state) {
    (void)state;
    char err[1024];
    CkptHeader h, got;
    header(&h);
    assert_int_equal(CKPT_V1_HEADER_BYTES, 368);   // the layout version 1 wrote, fixed forever
    write_raw(1, CKPT_V1_HEADER_BYTES, &h);
    float p2[NP], b2[NB], o2[NS];
    memset(&got, 0x5a, sizeof got);
    assert_int_equal(ckpt_load(path, &h, &got, p2, b2, o2, err, sizeof err), 0);
    assert_int_equal(got.global_step, 17);
    assert_int_equal(got.next_batch, 4);
    assert_true(got.wall_s == 12.5);
    assert_string_equal(got.tag, h.tag);
    assert_true(got.loss_scale == 0);   // not stored: not garbage from the arrays that follow
    assert_int_equal(got.loss_scale_good_steps, 0);
    assert_int_equal(got.skipped_steps, 0);
    assert_memory_equal(p2, p, sizeof p);
    assert_memory_equal(b2, b, sizeof b);
    assert_memory_equal(o2, o, sizeof o);
    // the CRC still covers a version-1 file: one flipped parameter byte is caught
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    long at = 16 + (long)CKPT_V1_HEADER_BYTES + 10;
    fseek(f, at, SEEK_SET);
    int c = fgetc(f);
    fseek(f, at, SEEK_SET);
    fputc(c ^ 1, f);
    fclose(f);
    assert_int_equal(ckpt_load(path, &h, &got, p2, b2, o2, err, sizeof err), -1);
    assert_non_null(strstr(err, "CRC"));
}

static void test_unknown_versions_refused(void **state) {
    (void)state;
    char err[1024];
    CkptHeader h, got;
    header(&h);
    write_raw(3, sizeof h, &h);   // from a newer segx-train
    assert_int_equal(ckpt_read_header(path, &got, err, sizeof err), -1);
    assert_non_null(strstr(err, "version 3"));
    assert_non_null(strstr(err, "versions 1 to 2"));
    write_raw(1, sizeof h, &h);   // version 1 never had the scaler fields
    assert_int_equal(ckpt_read_header(path, &got, err, sizeof err), -1);
    assert_non_null(strstr(err, "version 1"));
    write_raw(2, CKPT_V1_HEADER_BYTES, &h);   // version 2 always has them
    assert_int_equal(ckpt_read_header(path, &got, err, sizeof err), -1);
    write_raw(0, CKPT_V1_HEADER_BYTES, &h);
    assert_int_equal(ckpt_read_header(path, &got, err, sizeof err), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loss_scale_round_trip),
        cmocka_unit_test(test_version1_still_loads),
        cmocka_unit_test(test_unknown_versions_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
