// tests/trainer/test_comm_rendezvous.c — the TCP rendezvous that hands the NCCL id to every rank,
// with real processes (fork) on loopback (127.0.0.1 only): success for 2 and 3 ranks whichever
// starts first, and bounded, named failures for a missing server, missing peers, a disagreeing peer.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "trainer/dist/rendezvous.h"   // defines: rendezvous_tcp_bcast, rendezvous_env

static int free_port(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) || getsockname(s, (struct sockaddr *)&a, &len)) fail_msg("no free port");
    close(s);
    return ntohs(a.sin_port);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void fill_id(unsigned char *id, size_t n) { for (size_t i = 0; i < n; i++) id[i] = (unsigned char)(i * 31 + 7); }

// Child: joins as `rank`, exits 0 when it received rank 0's id, 1 otherwise.
static pid_t spawn_peer(int port, int rank, int world, size_t bytes, double delay_s) {
    pid_t p = fork();
    if (p == 0) {
        if (delay_s > 0) usleep((useconds_t)(delay_s * 1e6));
        unsigned char got[128] = { 0 }, want[128];
        fill_id(want, sizeof want);
        char err[512];
        int rc = rendezvous_tcp_bcast("127.0.0.1", port, rank, world, got, bytes, 10, err, sizeof err);
        if (rc) fprintf(stderr, "# peer %d: %s\n", rank, err);
        _exit(rc == 0 && memcmp(got, want, bytes) == 0 ? 0 : 1);
    }
    return p;
}

static int peer_status(pid_t p) {
    int st = 0;
    waitpid(p, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void test_two_ranks_peer_first(void **state) {
    (void)state;
    int port = free_port();
    pid_t p = spawn_peer(port, 1, 2, 128, 0);   // the peer retries until rank 0 listens
    usleep(300 * 1000);
    unsigned char id[128];
    fill_id(id, sizeof id);
    char err[512] = "";
    int rc = rendezvous_tcp_bcast("127.0.0.1", port, 0, 2, id, sizeof id, 10, err, sizeof err);
    if (rc) fail_msg("%s", err);
    assert_int_equal(peer_status(p), 0);
}

static void test_three_ranks_server_first(void **state) {
    (void)state;
    int port = free_port();
    pid_t p1 = spawn_peer(port, 1, 3, 128, 0.2), p2 = spawn_peer(port, 2, 3, 128, 0.4);
    unsigned char id[128];
    fill_id(id, sizeof id);
    char err[512] = "";
    int rc = rendezvous_tcp_bcast("127.0.0.1", port, 0, 3, id, sizeof id, 10, err, sizeof err);
    if (rc) fail_msg("%s", err);
    assert_int_equal(peer_status(p1), 0);
    assert_int_equal(peer_status(p2), 0);
}

static void test_no_rank0_times_out(void **state) {
    (void)state;
    int port = free_port();
    unsigned char id[128];
    char err[512] = "", want[64];
    double t0 = now();
    assert_int_equal(rendezvous_tcp_bcast("127.0.0.1", port, 1, 2, id, sizeof id, 0.5, err, sizeof err), -1);
    double dt = now() - t0;
    assert_true(dt >= 0.45 && dt < 3);
    snprintf(want, sizeof want, "127.0.0.1:%d", port);
    assert_non_null(strstr(err, want));
    assert_non_null(strstr(err, "timed out"));
}

static void test_missing_peer_times_out(void **state) {
    (void)state;
    int port = free_port();
    pid_t p1 = spawn_peer(port, 1, 3, 128, 0);   // rank 2 never comes
    unsigned char id[128];
    fill_id(id, sizeof id);
    char err[512] = "";
    double t0 = now();
    assert_int_equal(rendezvous_tcp_bcast("127.0.0.1", port, 0, 3, id, sizeof id, 0.8, err, sizeof err), -1);
    assert_true(now() - t0 < 3);
    assert_non_null(strstr(err, "waiting for ranks 2 of 3"));
    assert_int_equal(peer_status(p1), 1);   // rank 0 gave up: the peer fails too, not hangs
}

static void test_disagreeing_world_is_refused(void **state) {
    (void)state;
    int port = free_port();
    pid_t p1 = spawn_peer(port, 1, 3, 128, 0);   // thinks the world is 3
    unsigned char id[128];
    fill_id(id, sizeof id);
    char err[512] = "";
    assert_int_equal(rendezvous_tcp_bcast("127.0.0.1", port, 0, 2, id, sizeof id, 5, err, sizeof err), -1);
    assert_non_null(strstr(err, "rank 1 of world 3"));
    assert_non_null(strstr(err, "expects world 2"));
    assert_int_equal(peer_status(p1), 1);
}

static void test_bad_addresses_are_named(void **state) {
    (void)state;
    unsigned char id[16] = { 0 };
    char err[512] = "";
    // 192.0.2.1 (TEST-NET-1) is not an address of this host: rank 0 cannot listen there
    assert_int_equal(rendezvous_tcp_bcast("192.0.2.1", free_port(), 0, 2, id, sizeof id, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "MASTER_ADDR must be an address of the host running rank 0"));
    assert_int_equal(rendezvous_tcp_bcast("127.0.0.1", 70000, 0, 2, id, sizeof id, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "70000"));
    const char *a;
    int port;
    unsetenv("MASTER_ADDR");
    setenv("MASTER_PORT", "29500", 1);
    assert_int_equal(rendezvous_env(&a, &port, err, sizeof err), -1);
    assert_non_null(strstr(err, "MASTER_ADDR"));
    setenv("MASTER_ADDR", "127.0.0.1", 1);
    setenv("MASTER_PORT", "29x", 1);
    assert_int_equal(rendezvous_env(&a, &port, err, sizeof err), -1);
    assert_non_null(strstr(err, "MASTER_PORT=\"29x\""));
    setenv("MASTER_PORT", "29500", 1);
    assert_int_equal(rendezvous_env(&a, &port, err, sizeof err), 0);
    assert_string_equal(a, "127.0.0.1");
    assert_int_equal(port, 29500);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_ranks_peer_first),
        cmocka_unit_test(test_three_ranks_server_first),
        cmocka_unit_test(test_no_rank0_times_out),
        cmocka_unit_test(test_missing_peer_times_out),
        cmocka_unit_test(test_disagreeing_world_is_refused),
        cmocka_unit_test(test_bad_addresses_are_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
