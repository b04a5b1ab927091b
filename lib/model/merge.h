/* merge: folds LoRA adapters into a model's weights and writes a Hugging
 * Face model folder (lr-merge; also full-parameter training output).
 *
 * Merged W = W + (alpha / r) B A per adapted projection, computed in
 * float32 and rounded once to the output dtype (PEFT's merge_and_unload on a
 * float32 model, then .to(bfloat16)). */
#ifndef LR_MERGE_H
#define LR_MERGE_H

#include "model/lora.h"
#include "model/model.h"

/* m->w += s B A for every module and layer of lo (shapes must match). */
void lora_merge(model *m, const lora *lo);

/* Writes OUT/model.safetensors (tensor names and layout as the HF
 * checkpoint, dtype ST_BF16 or ST_F32) through a temp file + rename, and
 * copies config.json (torch_dtype set accordingly), generation_config.json
 * and the tokenizer files that exist in src_dir. Creates OUT if needed;
 * the files are written into it in place, so a tool makes the folder
 * appear whole by passing out_open_dir's temporary folder (outfile.h).
 * Returns 0, LR_EINPUT (a weight is NaN or inf: nothing written, the
 * message names the tensor) or LR_EIO. */
int model_save(const model *m, const char *src_dir, const char *out_dir, int dtype);

#endif
