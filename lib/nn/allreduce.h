/* allreduce: the communicator of data-parallel training, one process per
 * rank, over TCP sockets (any mix of nodes that can reach rank 0).
 *
 * Contract: comm_sum_f32 sums a float32 vector over the ranks, multiplies
 * by `scale`, and leaves the SAME bits on every rank: rank 0 adds the
 * ranks' vectors in rank order (0, 1, ..., W-1) in double, rounds once to
 * float, and sends that result back, so replicas that apply the same
 * update stay bit-identical without ever broadcasting weights.
 *
 * Rendezvous (comm_open): rank 0 listens on addr:port, the others connect
 * (retrying until timeout_s, for ranks started in any order) and send
 * their rank, the world size and a fingerprint of what they train: a list
 * of named fields (model, data, settings), each a hash of its value and
 * the value as text for the message; rank 0 accepts only a full,
 * consistent set of ranks whose every field equals its own, and tells
 * every rank so, naming the first field that differs. Later operations are
 * collective: every rank calls the same ones in the same order; each
 * message carries its operation and length, and a mismatch is an error,
 * not a silent mix-up.
 *
 * Values travel as the host's bytes: every rank must share the
 * endianness (every platform this code targets is little-endian).
 *
 * World size 1: comm_open sets *c = NULL and every operation on NULL is a
 * no-op returning 0, so a one-process run does exactly what it did without
 * this module.
 *
 * Errors return LR_EIO (a peer gone, a connection refused or timed out, an
 * address in use), LR_EUSAGE (world sizes or ranks that do not fit) or
 * LR_EINPUT (another rank's fingerprint, naming the field), with one line
 * naming the peer rank and the operation; callers prefix their own rank. */
#ifndef LR_ALLREDUCE_H
#define LR_ALLREDUCE_H

#include <stddef.h>
#include <stdint.h>

typedef struct comm comm;

typedef struct {
    int rank, world;
    const char *addr;  /* rank 0's host or IP (MASTER_ADDR) */
    int port;          /* MASTER_PORT */
    double timeout_s;  /* how long the rendezvous waits for the other ranks */
} comm_cfg;

/* One field of the fingerprint: what it is, its value as shown in a
 * refusal (cut to fit), and a hash of the whole value. */
enum { COMM_MAX_FIELDS = 64 };
typedef struct {
    char name[32], value[48];
    uint64_t hash;
} comm_field;

/* f[0..nf), nf <= COMM_MAX_FIELDS: what the ranks must agree on, in an
 * order every rank shares. */
int comm_open(comm **c, const comm_cfg *cfg, const comm_field *f, int nf);
void comm_close(comm *c);
/* This process's rank and the world size (0 and 1 for NULL). */
int comm_rank(const comm *c);
int comm_world(const comm *c);

/* v[0..n) = scale * sum over ranks of v, bit-identical everywhere. */
int comm_sum_f32(comm *c, float *v, size_t n, double scale);
/* v[0..n) = sum over ranks (rank order, in double). */
int comm_sum_f64(comm *c, double *v, size_t n);
/* buf[0..bytes) = rank 0's buf on every rank. */
int comm_bcast(comm *c, void *buf, size_t bytes);
/* Returns when every rank has called it. */
int comm_barrier(comm *c);

#endif
