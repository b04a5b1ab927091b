/* ranks: which rank of how many this process is, for data-parallel
 * training, from flags or from the launcher's environment (torchrun,
 * Slurm's srun, or a shell loop).
 *
 * Precedence, per value (the first one given wins):
 *   rank        --rank,  RANK,        SLURM_PROCID, 0
 *   world size  --world, WORLD_SIZE,  SLURM_NTASKS, 1
 *   local rank  LOCAL_RANK, SLURM_LOCALID, the rank  (picks the CUDA
 *               device: local rank mod the devices this process sees)
 *   rank 0      --master HOST:PORT, MASTER_ADDR / MASTER_PORT,
 *               127.0.0.1 / 29500
 * Each value comes from the first source that gives it (so `--rank 1`
 * under WORLD_SIZE=2 is rank 1 of 2); `src` says where rank and world
 * size came from, for the messages.
 *
 * Returns 0, or LR_EUSAGE naming the variable or flag whose value is not
 * an integer in range (a rank outside [0, world), a port outside 1..65535). */
#ifndef LR_RANKS_H
#define LR_RANKS_H

typedef struct {
    int rank, world, local;
    char addr[256];
    int port;
    char src[64];  /* e.g. "RANK/WORLD_SIZE", "--rank/--world", "SLURM_PROCID/SLURM_NTASKS" */
} ranks;

/* rank_flag, world_flag: NULL when not given; master: "HOST:PORT" or NULL. */
int ranks_resolve(ranks *r, const char *rank_flag, const char *world_flag, const char *master);

#endif
