/* none: the gpu.h and gpu_train.h interfaces of a build without the CUDA backend (no nvcc
 * when it was built, or a sanitizer build): no device, and every other
 * entry point refuses with a message saying why. */
#include "infer/gpu.h"
#include "nn/gpu_train.h"
#include "base/util.h"

#include <stdio.h>
#include <string.h>

const char *gpu_backend(void) { return "none"; }

int gpu_device_count(char *name, size_t n) {
    if (name && n) snprintf(name, n, "this build has no CUDA backend (nvcc was not found when it was built)");
    return 0;
}

int gpu_select_device(int local_rank, int *dev) {
    (void)local_rank, (void)dev;
    return lr_err(LR_EGPU, "this build has no CUDA backend");
}

int gpu_fwd_init(gpu_fwd **g, const model *m, int B, int Tmax, int max_tokens, int kmax, const gpu_kv *kv) {
    (void)m, (void)B, (void)Tmax, (void)max_tokens, (void)kmax, (void)kv;
    *g = NULL;
    return lr_err(LR_EUSAGE, "--device cuda: this build has no CUDA backend (rebuild where nvcc is installed)");
}

int gpu_fwd_submit(gpu_fwd *g, int N, const int *tokens, const int *feed, const int *seq, const unsigned char *want,
                   const eng_req *q, eng_res *r) {
    (void)g, (void)N, (void)tokens, (void)feed, (void)seq, (void)want, (void)q, (void)r;
    return lr_err(LR_EUSAGE, "no CUDA backend in this build");
}
int gpu_fwd_collect(gpu_fwd *g) { return (void)g, LR_OK; }
int gpu_fwd_pending(const gpu_fwd *g) { return (void)g, 0; }

void gpu_fwd_reset(gpu_fwd *g, int b) { (void)g, (void)b; }
void gpu_fwd_pages(const gpu_fwd *g, gpu_kv_info *k) { (void)g, memset(k, 0, sizeof *k); }
int gpu_fwd_pages_more(const gpu_fwd *g, int b, int len, int shared) { return (void)g, (void)b, (void)len, (void)shared, 0; }
int gpu_fwd_prefix_keep(gpu_fwd *g, int b) { return (void)g, (void)b, 0; }
void gpu_fwd_prefix_attach(gpu_fwd *g, int b) { (void)g, (void)b; }
void gpu_fwd_prefix_drop(gpu_fwd *g) { (void)g; }
void gpu_fwd_free(gpu_fwd *g) { (void)g; }

/* nn/gpu_train.h: the device trainer, refused likewise */
int gpu_trn_init(gpu_trn **g, const model *m, const lora *lo, const gtrn_opts *o) {
    (void)m, (void)lo, (void)o;
    *g = NULL;
    return lr_err(LR_EUSAGE, "--device cuda: this build has no CUDA backend (rebuild where nvcc is installed)");
}
void gpu_trn_free(gpu_trn *g) { (void)g; }
int gpu_trn_profile(const gpu_trn *g, gtrn_prof *p) {
    (void)g;
    memset(p, 0, sizeof *p);
    return 1;
}
void gpu_trn_mem(const gpu_trn *g, size_t *weight_bytes, size_t *act_bytes) {
    (void)g;
    if (weight_bytes) *weight_bytes = 0;
    if (act_bytes) *act_bytes = 0;
}
int gpu_trn_recomputes(const gpu_trn *g, size_t *kept_bytes, size_t *budget_bytes) {
    (void)g;
    if (kept_bytes) *kept_bytes = 0;
    if (budget_bytes) *budget_bytes = 0;
    return 0;
}
int gpu_trn_put(gpu_trn *g, const float *params, const float *exp_avg, const float *exp_avg_sq) {
    (void)g, (void)params, (void)exp_avg, (void)exp_avg_sq;
    return lr_err(LR_EUSAGE, "no CUDA backend in this build");
}
int gpu_trn_get(gpu_trn *g, float *params, float *exp_avg, float *exp_avg_sq, float *grads) {
    (void)g, (void)params, (void)exp_avg, (void)exp_avg_sq, (void)grads;
    return lr_err(LR_EUSAGE, "no CUDA backend in this build");
}
int gpu_trn_zero_grad(gpu_trn *g) {
    (void)g;
    return lr_err(LR_EUSAGE, "no CUDA backend in this build");
}
int gpu_trn_call(gpu_trn *g, int N, const int *tokens, const int *seq, const int *qpos, int training, uint64_t drop_seed,
                 const gtrn_loss *L, double *loss) {
    (void)g, (void)N, (void)tokens, (void)seq, (void)qpos, (void)training, (void)drop_seed, (void)L, (void)loss;
    return lr_err(LR_EUSAGE, "no CUDA backend in this build");
}
int gpu_trn_update(gpu_trn *g, float lr, float beta1, float beta2, float eps, float wd, long t, double clip, double *norm,
                   int *finite) {
    (void)g, (void)lr, (void)beta1, (void)beta2, (void)eps, (void)wd, (void)t, (void)clip, (void)norm, (void)finite;
    return lr_err(LR_EUSAGE, "no CUDA backend in this build");
}
int gpu_trn_put_grads(gpu_trn *g, const float *grads) {
    (void)g, (void)grads;
    return lr_err(LR_EUSAGE, "no CUDA backend in this build");
}
int gpu_nccl_load(void) { return lr_err(LR_EUSAGE, "no NCCL: this build has no CUDA backend"); }
int gpu_nccl_id(unsigned char id[GPU_NCCL_ID_BYTES]) {
    (void)id;
    return gpu_nccl_load();
}
int gpu_trn_nccl_join(gpu_trn *g, const unsigned char id[GPU_NCCL_ID_BYTES], int rank, int world) {
    (void)g, (void)id, (void)rank, (void)world;
    return gpu_nccl_load();
}
int gpu_trn_allreduce(gpu_trn *g, float scale) {
    (void)g, (void)scale;
    return gpu_nccl_load();
}

int gpu_trn_device_uuid(const gpu_trn *g, unsigned char uuid[16]) {
    (void)g, memset(uuid, 0, 16);
    return lr_err(LR_EUSAGE, "no CUDA backend in this build");
}

/* infer/gpu.h: no profile and no graphs without a device */
int gpu_fwd_set_profile(gpu_fwd *g, int on) {
    (void)g, (void)on;
    return lr_err(LR_EUSAGE, "no CUDA backend in this build");
}
int gpu_fwd_profile(const gpu_fwd *g, gpu_prof *p) {
    (void)g;
    memset(p, 0, sizeof *p);
    return 1;
}
void gpu_fwd_graph_stats(const gpu_fwd *g, gpu_graph_stats *s) {
    (void)g;
    memset(s, 0, sizeof *s);
}
