/* load: the model lr-infer runs, from a Hugging Face folder, optionally
 * with a PEFT LoRA adapter folded in (W += alpha/r B A, exact in float32
 * for inference, where LoRA dropout is off). The model's identity then
 * covers base + adapter: its hash also covers adapter_model.safetensors and
 * its name is "BASE+ADAPTER", so streams of a tuned model never pass for
 * the base model's. */
#ifndef LR_LOAD_H
#define LR_LOAD_H

#include "model/model.h"

/* bf16_direct: open the checkpoint's weights as they are (the cuda
 * backend uploads them itself, no float32 host copy); ignored with an
 * adapter, which needs float32 weights to merge into. Returns 0 or an
 * LR_E* code with the message set. */
int inf_load_model(model *m, const char *dir, const char *adapter, int bf16_direct);

#endif
