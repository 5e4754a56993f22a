// trainer/io/safetensors.h — the safetensors file format (Hugging Face's, what PyTorch users exchange
// weights in): u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets
// [begin, end)}, "__metadata__": {...}} padded with spaces, then the raw little-endian tensor bytes,
// offsets relative to the end of the header.
// - st_open reads and validates the whole file: every error names the file and the byte offset where
//   it went wrong (a truncated length, JSON error position, a tensor whose bytes lie past the end).
// - Only F32 and I64 tensors can be read as floats (I64: BatchNorm's num_batches_tracked); any other
//   dtype is an error naming the tensor when it is read, not when the file is opened.
// - st_write writes F32 tensors (and I64 when asked) in the given order, header 8-byte aligned.
// defines: StFile, StTensor, st_open, st_find, st_read_f32, st_close, StOut, st_write
#ifndef SEGX_SAFETENSORS_H
#define SEGX_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8

typedef struct {
    char *name;
    char dtype[16];          // "F32", "I64", "F16", ... as written in the file
    int ndim; int64_t shape[ST_MAX_DIMS];
    size_t numel;
    size_t begin, end;       // data_offsets, relative to the data section
} StTensor;

typedef struct {
    char *path;
    unsigned char *bytes; size_t size;   // the whole file
    size_t data_start;                   // 8 + header length
    StTensor *t; int n;                  // in header order
} StFile;

// Returns 0, or -1 with "PATH: byte OFFSET: what is wrong" in err.
int  st_open(const char *path, StFile **out, char *err, size_t errlen);
void st_close(StFile *f);
const StTensor *st_find(const StFile *f, const char *name);
// Converts tensor t to float32 into dst (t->numel floats). -1 with the reason for an unsupported dtype.
int  st_read_f32(const StFile *f, const StTensor *t, float *dst, char *err, size_t errlen);
// "(64, 3, 3, 3)" into buf
const char *st_shape_str(int ndim, const int64_t *shape, char *buf, size_t n);

typedef struct {
    const char *name;
    int i64;                  // 1: write as I64 (values rounded), else F32
    int ndim; int64_t shape[ST_MAX_DIMS];
    const float *data;        // numel floats, host memory
} StOut;

// Writes the tensors (to PATH.tmp, then renamed). 0, or -1 with the reason.
int st_write(const char *path, const StOut *t, int n, char *err, size_t errlen);

#endif
