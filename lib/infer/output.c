/* output: see output.h. */
#include "infer/output.h"

#include "base/outfile.h"
#include "base/util.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int inf_output_check(const char *out, const char *part, const inf_inputs *in) {
    char cfg[4096], tj[4096], st[4096];
    snprintf(cfg, sizeof cfg, "%s/config.json", in->model_dir);
    snprintf(tj, sizeof tj, "%s/tokenizer.json", in->model_dir);
    snprintf(st, sizeof st, "%s/model.safetensors", in->model_dir);
    const char *ins[] = {in->data, in->follow, in->prompt_file, cfg, tj, st};
    struct stat sb;
    if (stat(out, &sb) == 0 && !S_ISREG(sb.st_mode))
        return lr_err(LR_EUSAGE, "%s: exists and is not a regular file: choose another output", out);
    int rc = out_check_inputs(out, ins, 6);
    return rc ? rc : out_check_inputs(part, ins, 6);
}

/* 1 when the stream at path has our kind, identities and settings. */
static int same_run(const char *path, const lrs_header *h, const inf_settings *s, int *rc) {
    lrs_reader *r;
    *rc = 0;
    if (lrs_open_read(&r, path, NULL)) return 0; /* no complete header */
    const lrs_header *fh = lrs_header_of(r);
    int same = !strcmp(fh->kind, h->kind) && lrs_ident_same(&fh->model, &h->model) &&
               lrs_ident_same(&fh->tokenizer, &h->tokenizer);
    *rc = settings_check(path, fh->params, s);
    lrs_close_read(r);
    return same && !*rc;
}

static int copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = a ? fopen(to, "wb") : NULL;
    static char buf[1 << 20];
    size_t n;
    int rc = a && b ? 0 : lr_err(LR_EIO, "%s: cannot copy to %s", from, to);
    while (!rc && (n = fread(buf, 1, sizeof buf, a)) > 0)
        if (fwrite(buf, 1, n, b) != n) rc = lr_err(LR_EIO, "%s: write failed", to);
    if (!rc && ferror(a)) rc = lr_err(LR_EIO, "%s: read error", from);
    if (a) fclose(a);
    if (b && fclose(b) && !rc) rc = lr_err(LR_EIO, "%s: write failed", to);
    return rc;
}

int inf_output_open(lrs_writer **w, const char *out, const char *part, const lrs_header *h, inf_settings *s,
                    inf_run *run, int *fresh) {
    struct stat st;
    int rc;
    *fresh = 1;
    if (!part) return lrs_open_write(w, "-", h, settings_pack, s);
    if (stat(part, &st) == 0 && st.st_size > 0) {
        int same = same_run(part, h, s, &rc);
        if (rc) return rc;
        *fresh = !same; /* no complete header: lrs_resume starts over; another model: it refuses */
    } else if (stat(out, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 && same_run(out, h, s, &rc)) {
        if ((rc = copy_file(out, part))) return rc;
        fprintf(stderr, "%s: %s: holds this run: continuing it\n", lr_progname, out);
        *fresh = 0;
    } else {
        if (stat(out, &st) == 0)
            fprintf(stderr, "%s: %s: made by another run: replaced when this one is complete\n", lr_progname, out);
        unlink(part); /* an empty FILE.part */
    }
    return lrs_resume(w, part, h, settings_pack, s, run_note_done, run);
}

int inf_output_commit(const char *part, const char *out) {
    int fd = open(part, O_RDONLY);
    if (fd >= 0) fsync(fd), close(fd);
    if (rename(part, out)) return lr_err(LR_EIO, "%s: cannot rename into place", out);
    return 0;
}
