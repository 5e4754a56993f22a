// trainer/gpu/gpu_internal.h — shared between the files of trainer/gpu (not part of the contract).
#ifndef SEGX_GPU_INTERNAL_H
#define SEGX_GPU_INTERNAL_H
#include <stddef.h>

// NVIDIA driver version string from NVML ("" when NVML cannot be loaded). Returns 0 or -1.
int gpu_nvml_driver_version(char *buf, size_t n);

#endif
