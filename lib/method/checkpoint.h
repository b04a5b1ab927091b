/* checkpoint: lr-tune's resumable training state, one folder per saved
 * step, in the Hugging Face Trainer's layout:
 *
 *   DIR/checkpoint-<step>/adapter_config.json, adapter_model.safetensors
 *                         (LoRA runs; the adapter at that step)
 *                        /optimizer.safetensors   params, exp_avg,
 *                         exp_avg_sq as flat F32 vectors
 *                        /trainer_state.json      step, Adam step, trainer
 *                         call count (dropout masks), rows and examples
 *                         so far, and the run's settings
 *
 * Each checkpoint is written under a temporary name and renamed into place
 * (outfile.h), so a listed checkpoint-<step> is complete; the newest `keep`
 * are kept (the reference keeps 2: save_total_limit), so a damaged newest
 * one still leaves an earlier good one to fall back to.
 *
 * Settings: a JSON object of strings, one per setting that changes the
 * result (learning rate, steps, seed, the inputs' content hashes, ...).
 * ckpt_resume refuses a checkpoint written under other settings and names
 * the first one that differs. */
#ifndef LR_CHECKPOINT_H
#define LR_CHECKPOINT_H

#include <jansson.h>

#include "method/tune.h"

/* Writes DIR/checkpoint-<step> from the tuner's state (base: the adapter's
 * base_model_name_or_path), then removes all but the newest `keep`
 * checkpoints. A device run's state is downloaded first (tuner_download),
 * so both backends write the same files. Returns 0, LR_EIO, LR_EINPUT
 * (non-finite parameters) or the device's error. */
int ckpt_save(const char *dir, long step, const tuner *tu, const char *base, const json_t *settings, int keep);

/* The steps of DIR's complete checkpoints, newest first (malloc'd, *n of
 * them; NULL when none). */
long *ckpt_list(const char *dir, int *n);

/* Loads DIR/checkpoint-<step> into tu after checking its settings against
 * `settings` (and over to the device for a device run: tuner_upload). Returns 0; LR_EUSAGE when a setting differs (message names
 * it); LR_EINPUT/LR_EIO when the checkpoint is damaged. */
int ckpt_load(const char *dir, long step, tuner *tu, const json_t *settings);

/* Loads the newest good checkpoint of DIR: a damaged one is reported on
 * stderr and the next older one tried. *step = its step, or 0 when DIR has
 * none (tu untouched). Returns 0, LR_EUSAGE (changed settings) or the
 * error of the oldest when every checkpoint is damaged. */
int ckpt_resume(const char *dir, tuner *tu, const json_t *settings, long *step);

/* Removes every checkpoint of DIR (a fresh run in a resumable folder). */
void ckpt_clear(const char *dir);

/* The content identity of a file (FNV-1a 64 of its bytes, 16 hex digits),
 * for the settings: a resumed run must read the same inputs. */
int ckpt_file_hash(const char *path, char hex[17]);

/* lr-tune's JSON-lines log when resuming from `step`: keeps the lines of
 * steps 1..step (complete lines only) and drops the later ones, which the
 * resumed run writes again. A missing log is fine. Returns 0 or LR_EIO. */
int ckpt_trim_log(const char *path, long step);

#endif
