/* settings: every setting of an lr-infer run that alters its output,
 * recorded in the stream header's params (docs/FORMATS.md) and compared
 * when an interrupted output is resumed, so that one file never mixes two
 * runs: a rerun continues the file only when every recorded setting is the
 * same, and otherwise is refused naming the setting and both values.
 *
 * Inputs are identified by path, size and content hash (FNV-1a 64; "-",
 * stdin, by its name only). What only changes speed (batch, threads,
 * progress, the KV cache's pages: --kv-pages, --kv-page, whose preemptions
 * re-prefill a problem from its own tokens, so only rounding can differ,
 * as with batch) is not recorded. Adding a setting is one field below and one
 * line in settings_pack (settings.c). */
#ifndef LR_SETTINGS_H
#define LR_SETTINGS_H

#include <msgpack.h>
#include <stdint.h>

#include "model/tokenizer.h"

/* A file's identity: hex FNV-1a 64 of its bytes ("" for stdin) and size
 * (-1 for stdin). */
typedef struct {
    char hash[17];
    int64_t size;
} inf_fileid;

typedef struct {
    const char *mode;            /* "generate" or "follow" */
    const char *device;          /* the resolved backend: cpu and cuda round differently */
    const char *input;           /* problems file or followed stream ("-": stdin) */
    inf_fileid input_id;
    const char *layout;          /* the benchmark layout read ("" for --field or follow) */
    const char *field, *id_field;/* --field / --id-field ("" when absent) */
    const char *preset;          /* the preset name, or the --prompt-file path */
    inf_fileid prompt_id;        /* --prompt-file's content ("" when a preset) */
    const char *adapter;         /* --adapter folder ("" when none); its bytes are in the model hash */
    int max_new, max_context;    /* max_context: the resolved positions per sequence */
    long limit;                  /* -1: all */
    int shard_k, shard_n;
    double temperature, top_p;
    int top_k;                   /* 0: off */
    uint64_t seed;
    double mass;                 /* --top-mass */
    int kmax;                    /* --top-k-max as given or defaulted */
    int full;
    const int32_t *eos;          /* every id generation stops at (the model's and --eos) */
    int neos;
    const char *const *stop;     /* --stop strings */
    int nstop;
    int mmlu_shots;              /* --shots: mmlu_stem's examples under --preset toolkit */
    const char *chat_template;   /* the chat template family of the prompt ("" for a preset) */
    const char *sampling;        /* where temperature/top_p/top_k came from (generation_config.json, flags) */
    const tok_sig *sig;          /* this model's tokenizer signature (tokenizer.h) */
    const char *followed_tokenizer; /* follow mode: the followed stream's tokenizer hash ("" otherwise) */
    int64_t added_ids_differ;    /* follow mode: ids whose added token differs between the two */
} inf_settings;

/* The identity of the file at path; 0 or LR_EIO. */
int settings_fileid(const char *path, inf_fileid *id);

/* Packs s as the header's params map (an lrs_pack_fn; ctx is s). */
void settings_pack(msgpack_packer *pk, void *s);

/* Compares s with the params of the header of an existing output at path
 * (params NULL: a header without them). 0 when the run is the same, else
 * LR_EINPUT with
 *   "PATH: cannot resume: setting \"max_new_tokens\" differs: the file was
 *    made with 128, this run has 8 (rerun with the same settings, or remove
 *    PATH to start over)". */
int settings_check(const char *path, const msgpack_object *params, const inf_settings *s);

#endif
