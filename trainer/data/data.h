// trainer/data/data.h — datasets, the batch loader and dataset export.
// - A Dataset hands out samples as raw bytes: image (channels, height, width) uint8 and labels
//   (one int32 per sample for classification, one per pixel for segmentation; 255 = ignore).
//   The loader turns them into model input x = byte/255 (NCHW float) — one rule for every set —
//   except with the crop pipeline (LoaderConfig.pipe: --crop), which normalises with --mean/--std.
// - Datasets: "fashion-mnist", "fashion-mnist-seg", "cifar10:DIR", "segfolder:DIR", "synthetic",
//   "ade20k:DIR", "cityscapes:DIR" (images of any size: see segsets.c and pipeline.h).
// - The Loader runs on its own threads ahead of compute. Each epoch has one permutation derived
//   from (seed, epoch); rank r of world w takes positions r, r+w, r+2w, ... (all ranks take
//   n/w of them, so every rank runs the same number of steps). Training drops the last partial
//   batch; evaluation keeps it. Everything is deterministic for a given seed, whatever the
//   number of worker threads, so a resumed run sees exactly the batches an uninterrupted one does.
#ifndef SEGX_DATA_H
#define SEGX_DATA_H
#include <stddef.h>
#include <stdint.h>

#define DATA_IGNORE_LABEL 255

typedef enum { SPLIT_TRAIN = 0, SPLIT_TEST = 1 } DataSplit;

typedef struct Dataset Dataset;
struct Sample;
struct Dataset {
    char name[64];
    long n;                    // samples
    int channels, height, width;
    int max_height, max_width; // sets of mixed sizes: the tallest and widest image (from the headers read at
                               // open; 0: not known). Plans evaluation at each image's size (memplan.h).
    int classes;
    int segmentation;          // labels per pixel (1) or per sample (0)
    // Fills img (channels*height*width bytes) and labels (height*width or 1). Thread-safe.
    // Returns 0 or -1 with a message naming the file.
    int (*get)(Dataset *ds, long i, uint8_t *img, int32_t *labels, char *err, size_t errlen);
    // Sample i at its own size (sets whose images differ in size have height = width = 0 and
    // get = NULL). NULL: dataset_get_sample goes through get. Thread-safe.
    int (*get_sample)(Dataset *ds, long i, struct Sample *s, char *err, size_t errlen);
    void (*free)(Dataset *ds);
    void *impl;
};

// One sample at its own size: img (c, h, w) bytes, lab (h, w) class ids with 255 = ignore.
// The buffers grow as needed and are reused from call to call (free with sample_free).
typedef struct Sample {
    uint8_t *img, *lab;
    int c, h, w;
    size_t img_cap, lab_cap;
} Sample;
int  dataset_get_sample(Dataset *ds, long i, Sample *s, char *err, size_t errlen);
int  sample_reserve(Sample *s, int c, int h, int w);   // 0 or -1 (out of memory)
void sample_free(Sample *s);

// What the caller knows about the model before the dataset is opened (for "synthetic", and to
// check "segfolder" against --in-channels/--classes). Zero fields mean "take the dataset's".
typedef struct {
    const char *data_dir;      // fashion-mnist IDX dir (default /usr/share/datasets/fashion-mnist)
    int in_channels, classes, image_size;
    int segmentation;          // synthetic only: per-pixel labels
    long synthetic_n;          // synthetic only: samples in this split
    uint64_t seed;
    int verify;                // ade20k/cityscapes: decode every image and mask at open (--check-data)
    int pad_to;                // > 0: images zero-padded (masks: ignore label) to pad_to x pad_to, centred (--pad-to)
} DataOptions;

// spec: "fashion-mnist", "fashion-mnist-seg", "cifar10:DIR", "segfolder:DIR", "synthetic".
int  dataset_open(const char *spec, DataSplit split, const DataOptions *opt, Dataset **out,
                  char *err, size_t errlen);
void dataset_free(Dataset *ds);
// Wraps *ds so its images are size x size, the original centred in zeros (labels per pixel: 255).
// A size below the dataset's, or a set of mixed sizes, is an error naming --pad-to. (pad.c)
int  dataset_pad(Dataset **ds, int size, char *err, size_t errlen);

// Building blocks, exposed for tests.
uint64_t data_splitmix64(uint64_t x);  // the fashion-mnist-seg placement hash (issue #3)
// Reads an IDX file (gzip or plain). Returns malloc'd data (caller frees) and its dims.
int idx_read(const char *path, uint8_t **data, int *ndim, int dims[4], char *err, size_t errlen);
// Decodes a PNG into malloc'd bytes; channels_out 1 (gray / palette index), 3 (RGB).
// keep_index=1 keeps palette indices (masks); otherwise palettes expand to RGB.
int png_read_u8(const char *path, int keep_index, uint8_t **px, int *w, int *h, int *channels,
                char *err, size_t errlen);
int png_write_u8(const char *path, const uint8_t *px, int w, int h, int channels, char *err,
                 size_t errlen);
// JPEG (libjpeg-turbo) or PNG by the file's first bytes; px is HWC, channels 1 or 3 (want 3: gray
// is expanded to RGB). A corrupt or truncated file is an error naming it, never a gray fill.
int image_read_u8(const char *path, int want_rgb, uint8_t **px, int *w, int *h, int *channels,
                  char *err, size_t errlen);
// Size and channels from the header only (JPEG SOF, PNG IHDR).
int image_probe(const char *path, int *w, int *h, int *channels, char *err, size_t errlen);
int jpeg_write_u8(const char *path, const uint8_t *px, int w, int h, int channels, int quality,
                  char *err, size_t errlen);

// Writes a small deterministic set in the ADE20K ("ade20k:DIR") or Cityscapes ("cityscapes:DIR")
// layout from Fashion-MNIST pieces (fm_dir NULL: the Debian package's folder): mixed image sizes,
// JPEG (ade20k) or PNG (cityscapes) images, PNG label maps. Returns images written or -1 with err.
long data_make_dataset(const char *spec, const char *fm_dir, char *err, size_t errlen);
// The same with n_train / n_val images (data_make_dataset: 48 / 16); image i is the same in both.
long data_make_dataset_n(const char *spec, const char *fm_dir, long n_train, long n_val, char *err, size_t errlen);

// ---------------------------------------------------------------------------------------------
// Loader

typedef struct {
    float *x;        // (n, C, H, W)
    int32_t *y;      // (n) or (n, H, W)
    int n;           // samples in this batch
    long index;      // batch number within the epoch
} Batch;

typedef struct {
    int batch;       // per-rank batch size
    int workers;     // loader threads (0 = load on the caller's thread)
    int rank, world;
    uint64_t seed;
    int shuffle;     // permute per epoch (train) or keep file order (eval)
    int augment;     // classification: random crop with 4 padding + flip (CIFAR's); segmentation: flip
    int drop_last;
    long limit;      // use only the first `limit` samples of the dataset (0 = all)
    // The segmentation pipeline (trainer/data/pipeline.h): batches of pipe->crop_h x crop_w from
    // samples of any size. NULL: samples as the dataset stores them (one fixed size), x = byte/255.
    const struct Pipeline *pipe;
} LoaderConfig;

typedef struct Loader Loader;
int  loader_create(Dataset *ds, const LoaderConfig *cfg, Loader **out, char *err, size_t errlen);
void loader_free(Loader *l);
long loader_num_batches(const Loader *l);    // batches per epoch for this rank
long loader_num_samples(const Loader *l);    // samples used (after limit), all ranks
// Starts loading the batches first_batch.. of `epoch` on the worker threads.
int  loader_begin(Loader *l, int epoch, long first_batch, char *err, size_t errlen);
// Next batch of the epoch (valid until the next call), or NULL at the end or on error
// (then loader_error() is non-empty). wait_s, if non-NULL, gets the seconds spent waiting.
const Batch *loader_next(Loader *l, double *wait_s);
const char *loader_error(const Loader *l);
// Stops the workers (also mid-epoch) and joins them.
void loader_end(Loader *l);
// The sample indices (into the dataset) of this rank's batch b of `epoch`, for tests.
long loader_sample_index(const Loader *l, int epoch, long pos_in_rank_share);

// ---------------------------------------------------------------------------------------------
// Export: DIR/images/000000.png and DIR/masks/000000.png (8-bit) for the first `limit` samples
// of a segmentation dataset. Returns samples written, or -1 with err.
long data_export(Dataset *ds, const char *dir, long limit, char *err, size_t errlen);

#endif
