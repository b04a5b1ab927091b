/* The TCP communicator (nn/allreduce.h) with real processes on localhost:
 * 3 ranks sum a vector longer than one chunk and every rank holds exactly
 * the documented result (rank-order sum in double, times scale, rounded
 * once), bit for bit; sums of doubles, a broadcast, a barrier; world size 1
 * is a no-op; and the failures, each with its code and a message naming
 * the peer: another rank's fingerprint, a world size that differs, a rank
 * that is gone mid-operation, ranks out of step, nobody listening, a rank
 * that never comes. */
#include "check.h"
#include "base/util.h"
#include "nn/allreduce.h"

#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* a port nobody uses right now */
static int free_port(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET, a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t n = sizeof a;
    if (bind(s, (struct sockaddr *)&a, sizeof a) || getsockname(s, (struct sockaddr *)&a, &n)) return 29555;
    close(s);
    return ntohs(a.sin_port);
}

static float val(int r, size_t i) { return (float)((double)(i % 977) * 0.001 - 0.4) * (float)(r + 1) + (float)r * 1e-7f; }

enum { N = 600001 }; /* more than two chunks */

/* the fingerprints: F7 differs from F42 in its second field, FV in a name */
static const comm_field F42[] = {{"model", "m1", 1}, {"--r", "42", 42}}, F7[] = {{"model", "m1", 1}, {"--r", "7", 7}},
                        FV[] = {{"model", "m1", 1}, {"--alpha", "42", 42}};

/* what every rank of the happy path runs; returns its failure count */
static int happy(int rank, int port) {
    int before = check_failures_;
    comm *c;
    comm_cfg cfg = {rank, 3, "127.0.0.1", port, 20};
    CHECK(comm_open(&c, &cfg, F42, 2) == 0);
    if (!c) return 1;
    CHECK(comm_rank(c) == rank && comm_world(c) == 3);
    float *v = xmalloc(N * sizeof(float));
    for (size_t i = 0; i < N; i++) v[i] = val(rank, i);
    CHECK(comm_sum_f32(c, v, N, 0.25) == 0);
    size_t bad = 0;
    for (size_t i = 0; i < N; i++) {
        float want = (float)((((double)val(0, i) + (double)val(1, i)) + (double)val(2, i)) * 0.25);
        bad += memcmp(&want, &v[i], sizeof want) != 0;
    }
    CHECKF(bad == 0, "rank %d: %zu of %d sums differ from the rank-order double sum", rank, bad, N);
    double d[2] = {rank, 0.5 * rank};
    CHECK(comm_sum_f64(c, d, 2) == 0);
    CHECK(d[0] == 3.0 && d[1] == 1.5);
    char msg[100] = {0};
    if (rank == 0) snprintf(msg, sizeof msg, "from rank 0");
    CHECK(comm_bcast(c, msg, sizeof msg) == 0);
    CHECK(!strcmp(msg, "from rank 0"));
    CHECK(comm_barrier(c) == 0);
    free(v);
    comm_close(c);
    return check_failures_ - before;
}

/* runs fn(rank, port) for ranks 1..w-1 in child processes and rank 0 here;
 * returns whether every child exited 0 */
typedef int (*rank_fn)(int rank, int port);
static int run_ranks(int w, int port, rank_fn fn) {
    pid_t pid[8];
    for (int r = 1; r < w; r++)
        if (!(pid[r] = fork())) exit(fn(r, port) ? 1 : 0);
    fn(0, port);
    int ok = 1;
    for (int r = 1; r < w; r++) {
        int st = 0;
        waitpid(pid[r], &st, 0);
        ok &= WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    return ok;
}

/* rank 1's fingerprint differs in a field: both fail, LR_EINPUT, naming it
 * with both values */
static int fp_mismatch(int rank, int port) {
    int before = check_failures_;
    comm *c;
    comm_cfg cfg = {rank, 2, "127.0.0.1", port, 20};
    int rc = comm_open(&c, &cfg, rank ? F7 : F42, 2);
    CHECK(rc == LR_EINPUT && !c);
    CHECKF(strstr(lr_errmsg(), rank ? "rank 0 refused the rendezvous: rank 1 has another --r (7, rank 0's 42)"
                                    : "rank 1 has another --r (7, rank 0's 42)"),
           "%s", lr_errmsg());
    return check_failures_ - before;
}

/* rank 1 sends other fields (another version): LR_EUSAGE naming them; and
 * fewer of them */
static int fields_mismatch(int rank, int port) {
    int before = check_failures_;
    comm *c;
    comm_cfg cfg = {rank, 2, "127.0.0.1", port, 20};
    CHECK(comm_open(&c, &cfg, rank ? FV : F42, 2) == LR_EUSAGE && !c);
    CHECKF(strstr(lr_errmsg(), "rank 1 sends the field --alpha where rank 0 has --r"), "%s", lr_errmsg());
    return check_failures_ - before;
}
static int fields_fewer(int rank, int port) {
    int before = check_failures_;
    comm *c;
    comm_cfg cfg = {rank, 2, "127.0.0.1", port, 20};
    CHECK(comm_open(&c, &cfg, F42, rank ? 1 : 2) == LR_EUSAGE && !c);
    CHECKF(strstr(lr_errmsg(), "rank 1 sends 1 fields to agree on, rank 0 2"), "%s", lr_errmsg());
    return check_failures_ - before;
}

/* rank 1 believes in a world of 3 */
static int world_mismatch(int rank, int port) {
    int before = check_failures_;
    comm *c;
    comm_cfg cfg = {rank, rank ? 3 : 2, "127.0.0.1", port, 20};
    CHECK(comm_open(&c, &cfg, F42, 2) == LR_EUSAGE);
    CHECKF(strstr(lr_errmsg(), "rank 1 was started with world size 3, rank 0 with 2"), "%s", lr_errmsg());
    return check_failures_ - before;
}

/* rank 2 leaves right after the rendezvous: rank 0 names it, rank 1 then
 * loses rank 0 */
static int peer_gone(int rank, int port) {
    int before = check_failures_;
    comm *c;
    comm_cfg cfg = {rank, 3, "127.0.0.1", port, 20};
    CHECK(comm_open(&c, &cfg, F42, 2) == 0);
    if (!c) return 1;
    if (rank == 2) _exit(0); /* as a crashed rank: no goodbye */
    float v[10] = {0};
    CHECK(comm_sum_f32(c, v, 10, 1.0) == LR_EIO);
    CHECKF(strstr(lr_errmsg(), rank ? "rank 0 is gone" : "rank 2 is gone (connection closed) during the gradient all-reduce"),
           "%s", lr_errmsg());
    comm_close(c);
    return check_failures_ - before;
}

/* rank 0 sums, rank 1 broadcasts */
static int out_of_step(int rank, int port) {
    int before = check_failures_;
    comm *c;
    comm_cfg cfg = {rank, 2, "127.0.0.1", port, 20};
    CHECK(comm_open(&c, &cfg, F42, 2) == 0);
    if (!c) return 1;
    float v[10] = {0};
    if (rank == 0) {
        CHECK(comm_sum_f32(c, v, 10, 1.0) == LR_EINPUT);
        CHECKF(strstr(lr_errmsg(), "rank 1 is out of step"), "%s", lr_errmsg());
    } else CHECK(comm_bcast(c, v, sizeof v) == LR_EIO); /* rank 0 hangs up */
    comm_close(c);
    return check_failures_ - before;
}

int main(void) {
    /* world 1: no communicator, every operation leaves the values alone */
    comm *c = (comm *)1;
    comm_cfg one = {0, 1, "127.0.0.1", 1, 1};
    CHECK(comm_open(&c, &one, NULL, 0) == 0 && c == NULL);
    float v[3] = {1, 2, 3};
    double d = 5;
    CHECK(comm_sum_f32(NULL, v, 3, 0.5) == 0 && v[0] == 1 && v[2] == 3);
    CHECK(comm_sum_f64(NULL, &d, 1) == 0 && d == 5);
    CHECK(comm_bcast(NULL, v, sizeof v) == 0 && comm_barrier(NULL) == 0);
    CHECK(comm_rank(NULL) == 0 && comm_world(NULL) == 1);
    comm_cfg bad = {2, 2, "127.0.0.1", 1, 1};
    CHECK(comm_open(&c, &bad, NULL, 0) == LR_EUSAGE);

    CHECK(run_ranks(3, free_port(), happy));
    CHECK(run_ranks(2, free_port(), fp_mismatch));
    CHECK(run_ranks(2, free_port(), fields_mismatch));
    CHECK(run_ranks(2, free_port(), fields_fewer));
    CHECK(run_ranks(2, free_port(), world_mismatch));
    CHECK(run_ranks(3, free_port(), peer_gone));
    CHECK(run_ranks(2, free_port(), out_of_step));

    /* nobody listening; nobody coming */
    int port = free_port();
    comm_cfg lone1 = {1, 2, "127.0.0.1", port, 0.3}, lone0 = {0, 2, "127.0.0.1", port, 0.3};
    CHECK(comm_open(&c, &lone1, F42, 2) == LR_EIO);
    CHECKF(strstr(lr_errmsg(), "cannot reach rank 0 at 127.0.0.1:") && strstr(lr_errmsg(), "Connection refused"), "%s",
           lr_errmsg());
    CHECK(comm_open(&c, &lone0, F42, 2) == LR_EIO);
    CHECKF(strstr(lr_errmsg(), "for 1 of the other 1 ranks (missing: 1)"), "%s", lr_errmsg());
    CHECK_DONE();
}
