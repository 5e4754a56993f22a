// trainer/data/pipeline.h — mmseg's segmentation training pipeline on one sample, and the image
// resizes it and the evaluation need.
// Training (pipeline_train), in mmseg's order: RandomResize(scale, ratio_range, keep_ratio=True),
// RandomCrop(crop_size, cat_max_ratio), RandomFlip(0.5), PhotoMetricDistortion (optional), then the
// data preprocessor's normalisation (x = (byte - mean) / std) and padding to the crop (image 0,
// labels 255) at the bottom and right. Every random draw comes from `key` (seed, epoch, sample), so
// a sample's crop does not depend on thread timing or worker count.
// Resizes follow OpenCV (what mmcv calls): bilinear with half-pixel centres and no antialiasing for
// images, nearest (floor(dst * in / out)) for label maps.
#ifndef SEGX_PIPELINE_H
#define SEGX_PIPELINE_H
#include "trainer/data/data.h"   // defines: Sample

typedef struct Pipeline {
    int scale_w, scale_h;      // base scale of the random resize (0: no resize)
    double ratio_min, ratio_max;
    int crop_h, crop_w;        // output size
    double cat_max_ratio;      // >= 1: off
    int flip;                  // horizontal flip with p = 0.5
    int photometric;
    float mean[3], std[3];     // per channel, 0..255 units
} Pipeline;

// Scratch buffers one thread reuses (zero-initialise; free with pipeline_scratch_free).
typedef struct { Sample a, b; } PipeScratch;
void pipeline_scratch_free(PipeScratch *ws);

// x (c, crop_h, crop_w) floats and y (crop_h, crop_w) labels from sample `in`. 0 or -1 (no memory).
int pipeline_train(const Pipeline *p, const Sample *in, uint64_t key, float *x, int32_t *y, PipeScratch *ws);

// x (c, h, w) = (img - mean) / std over the whole sample.
void pipeline_normalize(const Pipeline *p, const uint8_t *img, int c, int h, int w, float *x);

// mmseg's keep-ratio rescale: the size (*oh, *ow) of an h x w image fitted to scale_w x scale_h
// (long side to the long edge, short side to the short edge, whichever is smaller).
void pipeline_keep_ratio_size(int h, int w, double scale_w, double scale_h, int *oh, int *ow);

// OpenCV-style resizes (INTER_LINEAR, INTER_NEAREST) of CHW bytes / HW labels.
void resize_bilinear_u8(const uint8_t *src, int c, int h, int w, uint8_t *dst, int oh, int ow);
void resize_nearest_u8(const uint8_t *src, int h, int w, uint8_t *dst, int oh, int ow);

// The crop mmseg's RandomCrop picks (top-left y0, x0 of a min(crop, size) window) for labels lab
// (h, w), drawing from *rng; exposed for tests.
void pipeline_pick_crop(const Pipeline *p, const uint8_t *lab, int h, int w, uint64_t *rng, int *y0, int *x0);

#endif
