/* checkpoint: see checkpoint.h. */
#include "method/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/outfile.h"
#include "base/util.h"
#include "io/jsonl.h"
#include "io/safetensors.h"
#include "model/lora.h"

#define PFX "checkpoint-"

/* "checkpoint-<digits>" exactly (temporary names carry a suffix): its step,
 * else -1. */
static long step_of(const char *name) {
    if (strncmp(name, PFX, sizeof PFX - 1)) return -1;
    const char *s = name + sizeof PFX - 1;
    if (*s < '0' || *s > '9') return -1;
    char *end;
    errno = 0;
    long n = strtol(s, &end, 10);
    return *end || errno ? -1 : n;
}

/* A checkpoint folder holds files only. */
static void rm_flat(const char *d) {
    DIR *dp = opendir(d);
    if (!dp) return;
    struct dirent *de;
    char p[4400];
    while ((de = readdir(dp)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", d, de->d_name);
            unlink(p);
        }
    closedir(dp);
    rmdir(d);
}

static int cmp_desc(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x < y) - (x > y);
}

long *ckpt_list(const char *dir, int *n) {
    *n = 0;
    DIR *dp = opendir(dir);
    if (!dp) return NULL;
    long *v = NULL;
    int cap = 0;
    struct dirent *de;
    while ((de = readdir(dp))) {
        long s = step_of(de->d_name);
        if (s < 0) continue;
        if (*n == cap) v = xrealloc(v, (size_t)(cap = cap ? 2 * cap : 8) * sizeof *v);
        v[(*n)++] = s;
    }
    closedir(dp);
    if (v) qsort(v, (size_t)*n, sizeof *v, cmp_desc);
    return v;
}

void ckpt_clear(const char *dir) {
    int n;
    long *v = ckpt_list(dir, &n);
    char p[4200];
    for (int i = 0; i < n; i++) {
        snprintf(p, sizeof p, "%s/" PFX "%ld", dir, v[i]);
        rm_flat(p);
    }
    free(v);
}

int ckpt_save(const char *dir, long step, const tuner *tu, const char *base, const json_t *settings, int keep) {
    int rc0 = tuner_download(tu); /* a device run: its state into the host vectors written below */
    if (rc0) return rc0;
    for (size_t i = 0; i < tu->n; i++)
        if (!isfinite(tu->params[i]))
            return lr_err(LR_EINPUT, "step %ld: parameter %zu is %g: not saving a checkpoint of non-finite weights", step, i,
                          (double)tu->params[i]);
    char fin[4200], p[4400];
    snprintf(fin, sizeof fin, "%s/" PFX "%ld", dir, step);
    lr_out *out;
    const char *tmp;
    int rc = out_open_dir(&out, fin, OUT_FORCE, &tmp);
    if (rc) return rc;
    if (tu->lo) rc = lora_save(tu->lo, tmp, base);
    if (!rc) {
        st_wtensor t[3] = {{"params", ST_F32, 1, {(int64_t)tu->n}, tu->params},
                           {"exp_avg", ST_F32, 1, {(int64_t)tu->n}, tu->opt.m},
                           {"exp_avg_sq", ST_F32, 1, {(int64_t)tu->n}, tu->opt.v}};
        snprintf(p, sizeof p, "%s/optimizer.safetensors", tmp);
        rc = st_write(p, t, 3);
    }
    if (!rc) {
        json_t *j = json_pack("{s:I, s:I, s:I, s:I, s:I, s:O, s:s, s:s}", "step", (json_int_t)step, "adam_t", (json_int_t)tu->opt.t,
                              "calls", (json_int_t)tu->calls, "rows_fwd", (json_int_t)tu->rows_fwd, "examples",
                              (json_int_t)tu->examples, "settings", settings ? (json_t *)settings : json_null(),
                              "precision", tuner_precision(tu), "recompute", tuner_recompute(tu));
        snprintf(p, sizeof p, "%s/trainer_state.json", tmp);
        if (!j || json_dump_file(j, p, JSON_INDENT(1) | JSON_SORT_KEYS)) rc = lr_err(LR_EIO, "%s: cannot write", p);
        json_decref(j);
    }
    if (rc) {
        out_abort(&out);
        return rc;
    }
    if ((rc = out_commit(&out))) return rc;
    int n;
    long *v = ckpt_list(dir, &n);
    for (int i = keep > 0 ? keep : 1; i < n; i++) {
        snprintf(p, sizeof p, "%s/" PFX "%ld", dir, v[i]);
        rm_flat(p);
    }
    free(v);
    return LR_OK;
}

/* The first setting of want that differs in have (or is missing there). */
static int check_settings(const char *path, const json_t *have, const json_t *want) {
    const char *k;
    json_t *w;
    json_object_foreach((json_t *)want, k, w) {
        json_t *h = json_is_object(have) ? json_object_get(have, k) : NULL;
        if (h && json_equal(h, w)) continue;
        const char *hs = json_string_value(h), *ws = json_string_value(w);
        return lr_err(LR_EUSAGE, "%s: written with %s %s, this run has %s %s: --resume continues only the same run "
                      "(rerun without --resume, or with the checkpoint's settings)", path, k, hs ? hs : "(unset)", k,
                      ws ? ws : "?");
    }
    /* --world is recorded only for data-parallel runs (tuneplan.c), so a
     * one-process run's settings lack it: absent means 1 */
    json_t *hw = json_is_object(have) ? json_object_get(have, "--world") : NULL;
    if (hw && !json_object_get(want, "--world"))
        return lr_err(LR_EUSAGE, "%s: written with --world %s, this run has --world 1: --resume continues only the same run "
                      "(rerun without --resume, or with the checkpoint's settings)", path,
                      json_string_value(hw) ? json_string_value(hw) : "?");
    return LR_OK;
}

static int get_long(const char *path, json_t *j, const char *key, long *out) {
    json_t *v = json_object_get(j, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return lr_err(LR_EINPUT, "%s: field \"%s\": expected a non-negative integer", path, key);
    *out = (long)json_integer_value(v);
    return LR_OK;
}

int ckpt_load(const char *dir, long step, tuner *tu, const json_t *settings) {
    char d[4200], p[4400];
    snprintf(d, sizeof d, "%s/" PFX "%ld", dir, step);
    snprintf(p, sizeof p, "%s/trainer_state.json", d);
    char *text;
    size_t len;
    if (lr_read_file(p, &text, &len)) return LR_EINPUT; /* a missing file: the checkpoint is damaged */
    json_error_t je;
    json_t *j = json_loadb(text, len, 0, &je);
    free(text);
    if (!j) return lr_err(LR_EINPUT, "%s: line %d: %s", p, je.line, je.text);
    long st, t, calls, rows, ex;
    int rc = check_settings(d, json_object_get(j, "settings"), settings);
    if (!rc) rc = get_long(p, j, "step", &st);
    if (!rc && st != step) rc = lr_err(LR_EINPUT, "%s: field \"step\": %ld in the folder of step %ld", p, st, step);
    if (!rc) rc = get_long(p, j, "adam_t", &t);
    if (!rc) rc = get_long(p, j, "calls", &calls);
    if (!rc) rc = get_long(p, j, "rows_fwd", &rows);
    if (!rc) rc = get_long(p, j, "examples", &ex);
    /* the precision is not a setting: like the device it may change on a
     * resume (the numbers change as they do across devices), but say so;
     * checkpoints from before it was recorded were float32 */
    json_t *pr = json_object_get(j, "precision");
    const char *was = json_is_string(pr) ? json_string_value(pr) : "f32";
    if (!rc && strcmp(was, tuner_precision(tu)))
        fprintf(stderr, "%s: %s was trained in %s, continuing in %s (the numbers change as on a change of device)\n",
                lr_progname, d, was, tuner_precision(tu));
    json_decref(j);
    if (rc) return rc;
    snprintf(p, sizeof p, "%s/optimizer.safetensors", d);
    st_set s;
    if ((rc = st_open_file(&s, p))) return rc == LR_EIO ? LR_EINPUT : rc;
    /* read into scratch so a damaged file leaves tu as it was */
    size_t n = tu->n;
    float *buf = xmalloc(3 * (n ? n : 1) * sizeof(float));
    int64_t sh[1] = {(int64_t)n};
    rc = st_read_f32(&s, "params", 1, sh, buf);
    if (!rc) rc = st_read_f32(&s, "exp_avg", 1, sh, buf + n);
    if (!rc) rc = st_read_f32(&s, "exp_avg_sq", 1, sh, buf + 2 * n);
    st_close(&s);
    for (size_t i = 0; !rc && i < 3 * n; i++)
        if (!isfinite(buf[i])) rc = lr_err(LR_EINPUT, "%s: element %zu is not finite", p, i % n);
    if (!rc) {
        memcpy(tu->params, buf, n * sizeof(float));
        memcpy(tu->opt.m, buf + n, n * sizeof(float));
        memcpy(tu->opt.v, buf + 2 * n, n * sizeof(float));
        tu->opt.t = t, tu->calls = calls, tu->rows_fwd = rows, tu->examples = ex;
        rc = tuner_upload(tu); /* a device run continues from these */
    }
    free(buf);
    return rc == LR_EIO ? LR_EINPUT : rc;
}

int ckpt_resume(const char *dir, tuner *tu, const json_t *settings, long *step) {
    *step = 0;
    int n, rc = LR_OK;
    long *v = ckpt_list(dir, &n);
    for (int i = 0; i < n; i++) {
        rc = ckpt_load(dir, v[i], tu, settings);
        if (rc == LR_OK) {
            *step = v[i];
            break;
        }
        if (rc == LR_EUSAGE) break;
        if (i + 1 < n)
            fprintf(stderr, "%s: %s/" PFX "%ld is damaged (%s); falling back to " PFX "%ld\n", lr_progname, dir, v[i],
                    lr_errmsg(), v[i + 1]);
    }
    free(v);
    return rc;
}

int ckpt_file_hash(const char *path, char hex[17]) {
    FILE *f = fopen(path, "rb");
    if (!f) return lr_err(LR_EIO, "%s: %s", path, strerror(errno));
    uint64_t h = LR_FNV_INIT;
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) h = lr_fnv1a64(h, buf, n);
    int bad = ferror(f);
    fclose(f);
    if (bad) return lr_err(LR_EIO, "%s: read error", path);
    snprintf(hex, 17, "%016llx", (unsigned long long)h);
    return LR_OK;
}

int ckpt_trim_log(const char *path, long step) {
    FILE *f = fopen(path, "r");
    if (!f) return errno == ENOENT ? LR_OK : lr_err(LR_EIO, "%s: %s", path, strerror(errno));
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.trim-%ld", path, (long)getpid());
    FILE *o = fopen(tmp, "w");
    if (!o) {
        fclose(f);
        return lr_err(LR_EIO, "%s: %s", tmp, strerror(errno));
    }
    /* the log is JSON lines: read through the one reader, each line kept
     * as written; a last line without its newline was cut by the
     * interruption and goes too */
    jsonl r;
    jsonl_from(&r, f, path);
    long s;
    int got;
    while ((got = jsonl_line(&r)) == 0)
        if (sscanf(r.line, "{\"step\": %ld", &s) == 1 && s <= step && r.line[r.len - 1] == '\n') fputs(r.line, o);
    int rc = got > 0 ? got : LR_OK;
    jsonl_close(&r);
    fclose(f);
    if (fclose(o) && !rc) rc = lr_err(LR_EIO, "%s: write error", tmp);
    if (!rc && rename(tmp, path)) rc = lr_err(LR_EIO, "%s: %s", path, strerror(errno));
    if (rc) unlink(tmp);
    return rc;
}
