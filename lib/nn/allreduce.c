/* allreduce: see allreduce.h. Rank 0 is the hub: a star of W-1 TCP
 * connections. For LoRA gradients (megabytes) a star costs little next to
 * a step's compute, and it is what makes the summation order, and so the
 * result's bits, the same on every rank. */
#include "nn/allreduce.h"

#include "base/util.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { OP_SUM32 = 1, OP_SUM64, OP_BCAST, OP_BARRIER };
static const char *const OPNAME[] = {"the rendezvous", "the gradient all-reduce", "a sum", "a broadcast", "a barrier"};
static const char MAGIC[8] = "lrdp-v2";
#define CHUNK ((size_t)1 << 18) /* elements summed per round trip: bounds rank 0's buffers */

struct comm {
    int rank, world;
    int *fd; /* rank 0: fd[r] for r = 1..W-1; others: fd[0], the link to rank 0 */
    double *acc;
};

typedef struct {
    char magic[8];
    uint32_t rank, world, nfields, pad; /* then nfields comm_field */
} hello;

typedef struct {
    uint32_t code; /* 0: accepted; else the LR_E* code of msg */
    char msg[252];
} reply;

typedef struct {
    uint32_t op, pad;
    uint64_t n;
} header;

static int send_all(int fd, const void *p, size_t n) {
    const char *b = p;
    while (n) {
        ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        b += k, n -= (size_t)k;
    }
    return 0;
}

/* -1 with errno set, or errno 0 for a closed connection */
static int recv_all(int fd, void *p, size_t n) {
    char *b = p;
    while (n) {
        ssize_t k = recv(fd, b, n, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k == 0) errno = 0;
        if (k <= 0) return -1;
        b += k, n -= (size_t)k;
    }
    return 0;
}

static int gone(int peer, int op) {
    /* a peer that exited shows as end of stream, a reset or a broken pipe,
     * depending on who was sending: all the same to the user */
    int e = errno;
    const char *why = e == 0 || e == ECONNRESET || e == EPIPE ? "connection closed" : strerror(e);
    return lr_err(LR_EIO, "rank %d is gone (%s) during %s", peer, why, OPNAME[op]);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void set_rcvtimeo(int fd, double s) {
    struct timeval tv = {0, 0};
    if (s > 0) tv.tv_sec = (time_t)s, tv.tv_usec = (suseconds_t)((s - (double)(time_t)s) * 1e6);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

/* small headers go out at once; keepalive notices a node that vanished */
static void tune_socket(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
}

static struct addrinfo *resolve(const comm_cfg *cfg, int passive) {
    char port[16];
    snprintf(port, sizeof port, "%d", cfg->port);
    struct addrinfo hint = {0}, *ai = NULL;
    hint.ai_family = AF_UNSPEC, hint.ai_socktype = SOCK_STREAM, hint.ai_flags = passive ? AI_PASSIVE : 0;
    int e = getaddrinfo(cfg->addr, port, &hint, &ai);
    if (e) {
        lr_err(LR_EIO, "master address %s:%d: %s", cfg->addr, cfg->port, gai_strerror(e));
        return NULL;
    }
    return ai;
}

static void close_all(comm *c) {
    int nfd = c->rank ? 1 : c->world;
    for (int r = 0; r < nfd; r++)
        if (c->fd[r] >= 0) close(c->fd[r]);
}

/* rank 0: refuse the rendezvous, telling every connected rank why */
static int refuse(comm *c, int code) {
    reply rp = {(uint32_t)code, {0}};
    snprintf(rp.msg, sizeof rp.msg, "%s", lr_errmsg());
    for (int r = 1; r < c->world; r++)
        if (c->fd[r] >= 0) send_all(c->fd[r], &rp, sizeof rp);
    return code;
}

/* rank 0: rank r's fields against its own; 0 or the error (set) */
static int compare_fields(int r, const comm_field *theirs, int nt, const comm_field *f, int nf) {
    for (int i = 0; i < nt && i < nf; i++) {
        if (strncmp(theirs[i].name, f[i].name, sizeof f[i].name))
            return lr_err(LR_EUSAGE, "rank %d sends the field %.31s where rank 0 has %s (another version of the program?)", r,
                          theirs[i].name, f[i].name);
        if (theirs[i].hash != f[i].hash)
            return lr_err(LR_EINPUT, "rank %d has another %s (%.47s, rank 0's %s)", r, f[i].name, theirs[i].value, f[i].value);
    }
    if (nt != nf)
        return lr_err(LR_EUSAGE, "rank %d sends %d fields to agree on, rank 0 %d (another version of the program?)", r, nt, nf);
    return 0;
}

static int open_hub(comm *c, const comm_cfg *cfg, const comm_field *f, int nf) {
    struct addrinfo *ai = resolve(cfg, 1);
    if (!ai) return LR_EIO;
    int ls = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol), one = 1;
    if (ls >= 0) setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ls < 0 || bind(ls, ai->ai_addr, ai->ai_addrlen) || listen(ls, c->world)) {
        int rc = lr_err(LR_EIO, "cannot listen on %s:%d: %s", cfg->addr, cfg->port, strerror(errno));
        if (ls >= 0) close(ls);
        freeaddrinfo(ai);
        return rc;
    }
    freeaddrinfo(ai);
    double deadline = now() + cfg->timeout_s;
    int have = 0, rc = 0;
    while (have < c->world - 1 && !rc) {
        double left = deadline - now();
        struct pollfd p = {ls, POLLIN, 0};
        if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) == 0) {
            char miss[64] = "";
            for (int r = 1, k = 0; r < c->world && k < 50; r++)
                if (c->fd[r] < 0) k += snprintf(miss + k, sizeof miss - (size_t)k, "%s%d", k ? "," : "", r);
            rc = refuse(c, lr_err(LR_EIO, "waited %g s on %s:%d for %d of the other %d ranks (missing: %s)", cfg->timeout_s,
                                  cfg->addr, cfg->port, c->world - 1 - have, c->world - 1, miss));
            break;
        }
        int fd = accept(ls, NULL, NULL);
        if (fd < 0) continue;
        hello h;
        comm_field theirs[COMM_MAX_FIELDS];
        set_rcvtimeo(fd, 10);
        if (recv_all(fd, &h, sizeof h) || memcmp(h.magic, MAGIC, sizeof MAGIC) || h.nfields > COMM_MAX_FIELDS ||
            recv_all(fd, theirs, h.nfields * sizeof *theirs)) {
            close(fd); /* not a rank of this protocol: ignore it, keep waiting */
            continue;
        }
        for (uint32_t i = 0; i < h.nfields; i++) theirs[i].name[sizeof theirs[i].name - 1] = theirs[i].value[sizeof theirs[i].value - 1] = 0;
        set_rcvtimeo(fd, 0);
        tune_socket(fd);
        int r = (int)h.rank;
        if (h.world != (uint32_t)c->world)
            rc = lr_err(LR_EUSAGE, "rank %d was started with world size %u, rank 0 with %d", r, h.world, c->world);
        else if (r < 1 || r >= c->world || c->fd[r] >= 0)
            rc = lr_err(LR_EUSAGE, "rank %d connected %s", r, r >= 1 && r < c->world ? "twice" : "out of range");
        else rc = compare_fields(r, theirs, (int)h.nfields, f, nf);
        if (rc) {
            reply rp = {(uint32_t)rc, {0}};
            snprintf(rp.msg, sizeof rp.msg, "%s", lr_errmsg());
            send_all(fd, &rp, sizeof rp);
            close(fd);
            refuse(c, rc);
            break;
        }
        c->fd[r] = fd, have++;
    }
    close(ls);
    reply ok = {0, "ok"};
    for (int r = 1; r < c->world && !rc; r++)
        if (send_all(c->fd[r], &ok, sizeof ok)) rc = lr_err(LR_EIO, "rank %d is gone (%s) during the rendezvous", r, strerror(errno));
    return rc;
}

static int open_spoke(comm *c, const comm_cfg *cfg, const comm_field *f, int nf) {
    double deadline = now() + cfg->timeout_s;
    int fd = -1, err = 0;
    for (;;) {
        struct addrinfo *ai = resolve(cfg, 0);
        if (!ai) return LR_EIO;
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        int ok = fd >= 0 && !connect(fd, ai->ai_addr, ai->ai_addrlen);
        err = errno;
        freeaddrinfo(ai);
        if (ok) break;
        if (fd >= 0) close(fd);
        fd = -1;
        if (now() >= deadline) /* rank 0 not up yet is normal; only the deadline is an error */
            return lr_err(LR_EIO, "cannot reach rank 0 at %s:%d within %g s: %s", cfg->addr, cfg->port, cfg->timeout_s,
                          strerror(err));
        usleep(100 * 1000);
    }
    tune_socket(fd);
    c->fd[0] = fd;
    hello h = {{0}, (uint32_t)c->rank, (uint32_t)c->world, (uint32_t)nf, 0};
    memcpy(h.magic, MAGIC, sizeof MAGIC);
    reply rp;
    /* rank 0 answers once every rank is in, or at its own deadline */
    set_rcvtimeo(fd, 2 * cfg->timeout_s + 10);
    if (send_all(fd, &h, sizeof h) || send_all(fd, f, (size_t)nf * sizeof *f) || recv_all(fd, &rp, sizeof rp)) return gone(0, 0);
    set_rcvtimeo(fd, 0);
    rp.msg[sizeof rp.msg - 1] = 0;
    if (rp.code) return lr_err((int)rp.code, "rank 0 refused the rendezvous: %s", rp.msg);
    return 0;
}

int comm_open(comm **cp, const comm_cfg *cfg, const comm_field *f, int nf) {
    *cp = NULL;
    if (cfg->world <= 1) return 0;
    if (nf < 0 || nf > COMM_MAX_FIELDS) return lr_err(LR_EUSAGE, "%d fields to agree on, at most %d", nf, COMM_MAX_FIELDS);
    if (cfg->rank < 0 || cfg->rank >= cfg->world)
        return lr_err(LR_EUSAGE, "rank %d is outside [0, %d) (world size %d)", cfg->rank, cfg->world, cfg->world);
    comm *c = xcalloc(1, sizeof *c);
    c->rank = cfg->rank, c->world = cfg->world;
    c->fd = xmalloc((size_t)c->world * sizeof(int));
    for (int r = 0; r < c->world; r++) c->fd[r] = -1;
    int rc = c->rank ? open_spoke(c, cfg, f, nf) : open_hub(c, cfg, f, nf);
    if (rc) {
        comm_close(c);
        return rc;
    }
    *cp = c;
    return 0;
}

void comm_close(comm *c) {
    if (!c) return;
    close_all(c);
    free(c->fd);
    free(c->acc);
    free(c);
}

int comm_rank(const comm *c) { return c ? c->rank : 0; }
int comm_world(const comm *c) { return c ? c->world : 1; }

/* every rank announces (op, n); rank 0 checks they agree with its own */
static int agree(comm *c, int op, size_t n) {
    header h = {(uint32_t)op, 0, (uint64_t)n};
    if (c->rank) return send_all(c->fd[0], &h, sizeof h) ? gone(0, op) : 0;
    for (int r = 1; r < c->world; r++) {
        header o;
        if (recv_all(c->fd[r], &o, sizeof o)) return gone(r, op);
        if (o.op != h.op || o.n != h.n)
            return lr_err(LR_EINPUT, "rank %d is out of step: it started operation %u of %llu values, rank 0 %s of %zu", r,
                          o.op, (unsigned long long)o.n, OPNAME[op], n);
    }
    return 0;
}

/* the sums, chunk by chunk: spokes send theirs and read the result back;
 * the hub adds rank after rank and sends the one result to all */
static int sum(comm *c, void *v, size_t n, size_t esz, double scale, int op) {
    if (!c) return 0;
    int rc = agree(c, op, n);
    if (!c->acc && !c->rank) c->acc = xmalloc(CHUNK * sizeof(double) * 2);
    double *in = c->rank ? NULL : c->acc + CHUNK;
    for (size_t i = 0; i < n && !rc; i += CHUNK) {
        size_t m = n - i < CHUNK ? n - i : CHUNK, b = m * esz;
        char *p = (char *)v + i * esz;
        if (c->rank) {
            if (send_all(c->fd[0], p, b) || recv_all(c->fd[0], p, b)) rc = gone(0, op);
            continue;
        }
        for (size_t j = 0; j < m; j++) c->acc[j] = esz == 4 ? (double)((float *)p)[j] : ((double *)p)[j];
        for (int r = 1; r < c->world && !rc; r++) {
            if (recv_all(c->fd[r], in, b)) {
                rc = gone(r, op);
                break;
            }
            for (size_t j = 0; j < m; j++) c->acc[j] += esz == 4 ? (double)((float *)in)[j] : in[j];
        }
        for (size_t j = 0; j < m && !rc; j++)
            if (esz == 4) ((float *)p)[j] = (float)(c->acc[j] * scale);
            else ((double *)p)[j] = c->acc[j] * scale;
        for (int r = 1; r < c->world && !rc; r++)
            if (send_all(c->fd[r], p, b)) rc = gone(r, op);
    }
    return rc;
}

int comm_sum_f32(comm *c, float *v, size_t n, double scale) { return sum(c, v, n, sizeof(float), scale, OP_SUM32); }

int comm_sum_f64(comm *c, double *v, size_t n) { return sum(c, v, n, sizeof(double), 1.0, OP_SUM64); }

int comm_bcast(comm *c, void *buf, size_t bytes) {
    if (!c) return 0;
    int rc = agree(c, OP_BCAST, bytes);
    if (rc) return rc;
    if (c->rank) return recv_all(c->fd[0], buf, bytes) ? gone(0, OP_BCAST) : 0;
    for (int r = 1; r < c->world; r++)
        if (send_all(c->fd[r], buf, bytes)) return gone(r, OP_BCAST);
    return 0;
}

int comm_barrier(comm *c) {
    if (!c) return 0;
    int rc = agree(c, OP_BARRIER, 0);
    header ack = {OP_BARRIER, 0, 0};
    if (rc) return rc;
    if (c->rank) return recv_all(c->fd[0], &ack, sizeof ack) ? gone(0, OP_BARRIER) : 0;
    for (int r = 1; r < c->world; r++)
        if (send_all(c->fd[r], &ack, sizeof ack)) return gone(r, OP_BARRIER);
    return 0;
}
