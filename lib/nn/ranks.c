/* ranks: see ranks.h. */
#include "nn/ranks.h"

#include "base/opt.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the first of names[] that is set (an empty variable counts as unset) */
static const char *pick(const char *const *names, const char *const *vals, int n, const char **name) {
    for (int i = 0; i < n; i++)
        if (vals[i] && *vals[i]) {
            *name = names[i];
            return vals[i];
        }
    return NULL;
}

static const char *env(const char *k) { return getenv(k); }

int ranks_resolve(ranks *r, const char *rank_flag, const char *world_flag, const char *master) {
    const int WMAX = 65536;
    memset(r, 0, sizeof *r);
    const char *rn[] = {"--rank", "RANK", "SLURM_PROCID"}, *rv[] = {rank_flag, env("RANK"), env("SLURM_PROCID")};
    const char *wn[] = {"--world", "WORLD_SIZE", "SLURM_NTASKS"}, *wv[] = {world_flag, env("WORLD_SIZE"), env("SLURM_NTASKS")};
    const char *ln[] = {"LOCAL_RANK", "SLURM_LOCALID"}, *lv[] = {env("LOCAL_RANK"), env("SLURM_LOCALID")};
    const char *rs = "default", *ws = "default", *ls = NULL;
    const char *s;
    int rc = 0;
    r->world = 1;
    if ((s = pick(wn, wv, 3, &ws))) rc = opt_int(ws, s, 1, WMAX, &r->world);
    if (!rc && (s = pick(rn, rv, 3, &rs))) rc = opt_int(rs, s, 0, WMAX - 1, &r->rank);
    if (rc) return rc;
    snprintf(r->src, sizeof r->src, "%s/%s", rs, ws);
    if (r->rank >= r->world)
        return lr_err(LR_EUSAGE, "rank %d is outside [0, %d): %s", r->rank, r->world, r->src);
    r->local = r->rank;
    if ((s = pick(ln, lv, 2, &ls)) && (rc = opt_int(ls, s, 0, WMAX - 1, &r->local))) return rc;
    const char *addr = env("MASTER_ADDR"), *port = env("MASTER_PORT"), *pn = "MASTER_PORT";
    char buf[256];
    if (master) {
        const char *colon = strrchr(master, ':');
        if (!colon || colon == master || (size_t)(colon - master) >= sizeof buf)
            return lr_err(LR_EUSAGE, "--master %s: expected HOST:PORT", master);
        memcpy(buf, master, (size_t)(colon - master));
        buf[colon - master] = 0;
        addr = buf, port = colon + 1, pn = "--master's port";
    }
    snprintf(r->addr, sizeof r->addr, "%s", addr && *addr ? addr : "127.0.0.1");
    r->port = 29500;
    if (port && *port && (rc = opt_int(pn, port, 1, 65535, &r->port))) return rc;
    return 0;
}
