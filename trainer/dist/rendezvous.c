// trainer/dist/rendezvous.c — TCP rendezvous (see rendezvous.h for the protocol's shape).
// Wire format, all integers big-endian:
//   hello (peer -> rank 0): "SEGXRDV1" u32 rank, u32 world, u64 bytes
//   reply (rank 0 -> peer): "SEGXRDV1" u32 status (0 ok, 1 refused), u64 bytes, then the blob
#include "trainer/dist/rendezvous.h"
#include "trainer/dist/comm_impl.h"   // defines: comm_now

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char MAGIC[8] = { 'S', 'E', 'G', 'X', 'R', 'D', 'V', '1' };
enum { HELLO_LEN = 24, REPLY_LEN = 20 };

static void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (24 - 8 * i)); }
static void put64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (56 - 8 * i)); }
static uint32_t get32(const unsigned char *p) { uint32_t v = 0; for (int i = 0; i < 4; i++) v = v << 8 | p[i]; return v; }
static uint64_t get64(const unsigned char *p) { uint64_t v = 0; for (int i = 0; i < 8; i++) v = v << 8 | p[i]; return v; }

// Waits until fd is ready for `events` or the deadline passes: 1 ready, 0 timed out, -1 error.
static int wait_fd(int fd, short events, double deadline) {
    for (;;) {
        double left = deadline - comm_now();
        if (left <= 0) return 0;
        struct pollfd p = { .fd = fd, .events = events };
        int rc = poll(&p, 1, (int)(left * 1000) + 1);
        if (rc > 0) return 1;
        if (rc < 0 && errno != EINTR) return -1;
    }
}

// Reads or writes exactly len bytes before the deadline: 0, or -1 (errno ETIMEDOUT on timeout,
// EPIPE when the other side closed).
static int io_full(int fd, void *buf, size_t len, int writing, double deadline) {
    char *p = buf;
    while (len > 0) {
        int w = wait_fd(fd, writing ? POLLOUT : POLLIN, deadline);
        if (w == 0) { errno = ETIMEDOUT; return -1; }
        if (w < 0) return -1;
        ssize_t k = writing ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);
        if (k == 0) { errno = EPIPE; return -1; }
        if (k < 0) { if (errno == EINTR || errno == EAGAIN) continue; return -1; }
        p += k;
        len -= (size_t)k;
    }
    return 0;
}

static int resolve(const char *addr, int port, struct addrinfo **res, char *err, size_t errlen) {
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    int rc = getaddrinfo(addr, ps, &hints, res);
    if (rc) { snprintf(err, errlen, "rendezvous: cannot resolve MASTER_ADDR \"%s\": %s", addr, gai_strerror(rc)); return -1; }
    return 0;
}

static int serve(const char *addr, int port, int world, void *buf, size_t bytes, double deadline, double timeout_s,
                 char *err, size_t errlen) {
    struct addrinfo *res;
    if (resolve(addr, port, &res, err, errlen)) return -1;
    int ls = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (ls < 0) { snprintf(err, errlen, "rendezvous: socket: %s", strerror(errno)); freeaddrinfo(res); return -1; }
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(ls, res->ai_addr, res->ai_addrlen) || listen(ls, world)) {
        int e = errno;
        snprintf(err, errlen, "rendezvous: rank 0 cannot listen on MASTER_ADDR:MASTER_PORT %s:%d: %s%s", addr, port, strerror(e),
                 e == EADDRNOTAVAIL ? " (MASTER_ADDR must be an address of the host running rank 0)"
                 : e == EADDRINUSE ? " (pick another MASTER_PORT)" : "");
        freeaddrinfo(res);
        close(ls);
        return -1;
    }
    freeaddrinfo(res);
    int *fds = calloc((size_t)world, sizeof *fds);
    if (!fds) { close(ls); snprintf(err, errlen, "rendezvous: out of memory"); return -1; }
    for (int r = 0; r < world; r++) fds[r] = -1;
    int rc = -1, have = 0;
    while (have < world - 1) {
        int w = wait_fd(ls, POLLIN, deadline);
        if (w <= 0) {
            char missing[256] = "";
            size_t at = 0;
            for (int r = 1; r < world && at + 12 < sizeof missing; r++)
                if (fds[r] < 0) at += (size_t)snprintf(missing + at, sizeof missing - at, "%s%d", at ? "," : "", r);
            snprintf(err, errlen, "rendezvous: timed out after %.0f s on %s:%d waiting for ranks %s of %d to connect",
                     timeout_s, addr, port, missing, world);
            goto out;
        }
        int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) continue;
        unsigned char h[HELLO_LEN];
        if (io_full(fd, h, sizeof h, 0, deadline)) { close(fd); continue; }   // not a peer: ignore
        uint32_t r = get32(h + 8), wr = get32(h + 12);
        uint64_t b = get64(h + 16);
        if (memcmp(h, MAGIC, 8)) { close(fd); continue; }
        if ((int)wr != world || b != bytes || r == 0 || (int)r >= world || fds[r] >= 0) {
            unsigned char no[REPLY_LEN];
            memcpy(no, MAGIC, 8); put32(no + 8, 1); put64(no + 12, bytes);
            io_full(fd, no, sizeof no, 1, deadline);
            close(fd);
            snprintf(err, errlen, "rendezvous: a peer on %s:%d says rank %u of world %u with %llu bytes; rank 0 expects "
                     "world %d and %zu bytes%s", addr, port, r, wr, (unsigned long long)b, world, bytes,
                     ((int)r < world && r > 0 && fds[r] >= 0) ? " (rank already connected: two jobs share MASTER_PORT?)" : "");
            goto out;
        }
        fds[r] = fd;
        have++;
    }
    for (int r = 1; r < world; r++) {
        unsigned char ok[REPLY_LEN];
        memcpy(ok, MAGIC, 8); put32(ok + 8, 0); put64(ok + 12, bytes);
        if (io_full(fds[r], ok, sizeof ok, 1, deadline) || io_full(fds[r], buf, bytes, 1, deadline)) {
            snprintf(err, errlen, "rendezvous: sending to rank %d failed: %s", r, strerror(errno));
            goto out;
        }
    }
    rc = 0;
out:
    for (int r = 1; r < world; r++) if (fds[r] >= 0) close(fds[r]);
    free(fds);
    close(ls);
    return rc;
}

static int join(const char *addr, int port, int rank, int world, void *buf, size_t bytes, double deadline, double timeout_s,
                char *err, size_t errlen) {
    struct addrinfo *res;
    if (resolve(addr, port, &res, err, errlen)) return -1;
    int fd = -1, last = 0;
    // rank 0 may not listen yet: retry until the deadline
    while (fd < 0) {
        for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
            fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (fd < 0) continue;
            if (connect(fd, a->ai_addr, a->ai_addrlen)) { last = errno; close(fd); fd = -1; }
        }
        if (fd >= 0) break;
        if (comm_now() > deadline) {
            snprintf(err, errlen, "rendezvous: rank %d timed out after %.0f s connecting to rank 0 at MASTER_ADDR:MASTER_PORT "
                     "%s:%d (%s): is rank 0 running there?", rank, timeout_s, addr, port, strerror(last));
            freeaddrinfo(res);
            return -1;
        }
        struct timespec ts = { 0, 50 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    freeaddrinfo(res);
    unsigned char h[HELLO_LEN], rep[REPLY_LEN];
    memcpy(h, MAGIC, 8); put32(h + 8, (uint32_t)rank); put32(h + 12, (uint32_t)world); put64(h + 16, bytes);
    int rc = -1;
    if (io_full(fd, h, sizeof h, 1, deadline) || io_full(fd, rep, sizeof rep, 0, deadline)) {
        if (errno == EPIPE || errno == ECONNRESET)
            snprintf(err, errlen, "rendezvous: rank 0 at %s:%d closed the connection to rank %d before sending the id "
                     "(it gave up or failed: see rank 0's error)", addr, port, rank);
        else
            snprintf(err, errlen, "rendezvous: rank %d got no answer from rank 0 at %s:%d within %.0f s (%s): are all %d ranks started?",
                     rank, addr, port, timeout_s, errno == ETIMEDOUT ? "timed out" : strerror(errno), world);
    } else if (memcmp(rep, MAGIC, 8) || get32(rep + 8) != 0) {
        snprintf(err, errlen, "rendezvous: rank 0 at %s:%d refused rank %d of world %d (%zu bytes): the ranks disagree on "
                 "the world size, or another job uses this MASTER_PORT", addr, port, rank, world, bytes);
    } else if (io_full(fd, buf, bytes, 0, deadline)) {
        snprintf(err, errlen, "rendezvous: rank %d: reading %zu bytes from rank 0 at %s:%d failed: %s", rank, bytes, addr, port, strerror(errno));
    } else rc = 0;
    close(fd);
    return rc;
}

int rendezvous_tcp_bcast(const char *addr, int port, int rank, int world, void *buf, size_t bytes,
                         double timeout_s, char *err, size_t errlen) {
    if (world < 1 || rank < 0 || rank >= world) { snprintf(err, errlen, "rendezvous: rank %d outside world %d", rank, world); return -1; }
    if (port < 1 || port > 65535) { snprintf(err, errlen, "rendezvous: MASTER_PORT %d is not a TCP port (1-65535)", port); return -1; }
    if (world == 1) return 0;
    double deadline = comm_now() + timeout_s;
    return rank == 0 ? serve(addr, port, world, buf, bytes, deadline, timeout_s, err, errlen)
                     : join(addr, port, rank, world, buf, bytes, deadline, timeout_s, err, errlen);
}

int rendezvous_env(const char **addr, int *port, char *err, size_t errlen) {
    const char *a = getenv("MASTER_ADDR"), *p = getenv("MASTER_PORT");
    if (!a || !*a || !p || !*p) {
        snprintf(err, errlen, "MASTER_ADDR and MASTER_PORT must be set (rank 0's host and a free TCP port) when ranks are "
                 "not started by mpirun or srun --mpi=pmix_v4");
        return -1;
    }
    char *end;
    long v = strtol(p, &end, 10);
    if (*end || v < 1 || v > 65535) { snprintf(err, errlen, "MASTER_PORT=\"%s\" is not a TCP port (1-65535)", p); return -1; }
    *addr = a;
    *port = (int)v;
    return 0;
}
