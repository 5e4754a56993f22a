// trainer/dist/comm_nccl.c — communicator over NCCL (GPU). Placeholder until the CUDA part lands.
#include "config.h"
#include "trainer/dist/comm_impl.h"

#include <stdio.h>

int comm_nccl_init(Comm *c, char *err, size_t errlen) {
    (void)c;
    snprintf(err, errlen, "--comm nccl: not available yet");
    return -1;
}
