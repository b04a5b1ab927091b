/* adamw: torch.optim.AdamW over one flat parameter vector, with the pieces
 * of the Hugging Face Trainer around it: global gradient-norm clipping
 * (torch.nn.utils.clip_grad_norm_) and the linear schedule with warmup
 * (get_linear_schedule_with_warmup). Defaults as the Trainer: lr 5e-5,
 * betas (0.9, 0.999), eps 1e-8, weight decay 0, clip 1.0, no warmup. */
#ifndef LR_ADAMW_H
#define LR_ADAMW_H

#include <stddef.h>

typedef struct {
    float lr, beta1, beta2, eps, wd;
    size_t n;
    long t;        /* updates done */
    float *m, *v;  // (n) first and second moments
} adamw;

void adamw_init(adamw *o, size_t n, float lr, float beta1, float beta2, float eps, float wd);
void adamw_free(adamw *o);
/* One update of p (n) with gradient g (n) at learning rate lr (the
 * schedule's value for this step):
 *   p *= 1 - lr wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 *   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps). */
void adamw_step(adamw *o, float *p, const float *g, float lr);

/* L2 norm of g (n), accumulated in double. */
double grad_norm(const float *g, size_t n);
/* clip_grad_norm_: when norm > max_norm, g *= max_norm / (norm + 1e-6).
 * Returns the norm before clipping. max_norm <= 0: no clipping. */
double grad_clip(float *g, size_t n, double max_norm);

/* Learning rate for update `step` (0-based) of `total`: linear warmup over
 * `warmup` updates, then linear decay to 0 at `total`. */
float lr_linear(float lr, long step, long total, long warmup);

#endif
