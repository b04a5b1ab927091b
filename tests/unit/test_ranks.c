/* Rank, world size, local rank and rank 0's address (nn/ranks.h) from
 * flags and the torchrun and Slurm variables, in the documented
 * precedence; values out of range are refused with the source named. */
#include "check.h"
#include "base/util.h"
#include "nn/ranks.h"

#include <stdlib.h>
#include <string.h>

static void clear(void) {
    const char *v[] = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID", "SLURM_NTASKS",
                       "SLURM_LOCALID"};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) unsetenv(v[i]);
}

int main(void) {
    ranks r;
    clear();
    CHECK(ranks_resolve(&r, NULL, NULL, NULL) == 0);
    CHECK(r.rank == 0 && r.world == 1 && r.local == 0 && !strcmp(r.addr, "127.0.0.1") && r.port == 29500);

    /* Slurm alone */
    setenv("SLURM_PROCID", "3", 1), setenv("SLURM_NTASKS", "8", 1), setenv("SLURM_LOCALID", "1", 1);
    CHECK(ranks_resolve(&r, NULL, NULL, NULL) == 0);
    CHECK(r.rank == 3 && r.world == 8 && r.local == 1 && !strcmp(r.src, "SLURM_PROCID/SLURM_NTASKS"));
    /* torchrun's variables win over Slurm's */
    setenv("RANK", "5", 1), setenv("WORLD_SIZE", "6", 1), setenv("LOCAL_RANK", "2", 1);
    setenv("MASTER_ADDR", "node7", 1), setenv("MASTER_PORT", "1234", 1);
    CHECK(ranks_resolve(&r, NULL, NULL, NULL) == 0);
    CHECK(r.rank == 5 && r.world == 6 && r.local == 2 && !strcmp(r.addr, "node7") && r.port == 1234);
    CHECK(!strcmp(r.src, "RANK/WORLD_SIZE"));
    /* flags win over both, each value on its own */
    CHECK(ranks_resolve(&r, "1", NULL, "10.0.0.1:999") == 0);
    CHECK(r.rank == 1 && r.world == 6 && !strcmp(r.addr, "10.0.0.1") && r.port == 999 && !strcmp(r.src, "--rank/WORLD_SIZE"));
    CHECK(ranks_resolve(&r, "0", "1", NULL) == 0 && r.world == 1 && r.local == 2);
    /* local rank defaults to the rank */
    clear();
    CHECK(ranks_resolve(&r, "3", "4", NULL) == 0 && r.local == 3);

    /* refusals name where the value came from */
    CHECK(ranks_resolve(&r, "4", "4", NULL) == LR_EUSAGE);
    CHECKF(strstr(lr_errmsg(), "rank 4 is outside [0, 4): --rank/--world"), "%s", lr_errmsg());
    setenv("WORLD_SIZE", "two", 1);
    CHECK(ranks_resolve(&r, NULL, NULL, NULL) == LR_EUSAGE);
    CHECKF(strstr(lr_errmsg(), "WORLD_SIZE"), "%s", lr_errmsg());
    clear();
    setenv("SLURM_NTASKS", "0", 1);
    CHECK(ranks_resolve(&r, NULL, NULL, NULL) == LR_EUSAGE);
    CHECKF(strstr(lr_errmsg(), "SLURM_NTASKS"), "%s", lr_errmsg());
    clear();
    CHECK(ranks_resolve(&r, NULL, NULL, "hostonly") == LR_EUSAGE);
    CHECK(ranks_resolve(&r, NULL, NULL, "h:70000") == LR_EUSAGE);
    CHECKF(strstr(lr_errmsg(), "--master's port"), "%s", lr_errmsg());
    setenv("MASTER_PORT", "0", 1);
    CHECK(ranks_resolve(&r, NULL, NULL, NULL) == LR_EUSAGE);
    clear();
    CHECK_DONE();
}
