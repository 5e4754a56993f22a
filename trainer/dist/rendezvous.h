// trainer/dist/rendezvous.h — hands a small blob (the NCCL unique id) from rank 0 to every rank
// over TCP at MASTER_ADDR:MASTER_PORT, for launches without MPI. Rank 0 listens (on MASTER_ADDR,
// which must be one of its addresses), waits for all world-1 peers to say hello, then answers each
// with the blob: a reply is a length-prefixed message read in full, never a half-written file.
// Everything is bounded by timeout_s; errors name the address, the rank and what was missing.
#ifndef SEGX_RENDEZVOUS_H
#define SEGX_RENDEZVOUS_H
#include <stddef.h>

int rendezvous_tcp_bcast(const char *addr, int port, int rank, int world, void *buf, size_t bytes,
                         double timeout_s, char *err, size_t errlen);

// MASTER_ADDR / MASTER_PORT from the environment: 0, or -1 with a message naming the variable.
int rendezvous_env(const char **addr, int *port, char *err, size_t errlen);

#endif
