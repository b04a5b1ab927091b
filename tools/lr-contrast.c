/* lr-contrast: METHOD.md stage 1, steps 5, 7 and 8. Turns each `kl` record
 * (a selected step) into one training `example`: the plausibility mask
 * A_t = {a : pE(a) >= alpha * max pE} and the soft label over it,
 *   contrast (default): softmax over A_t of log(pE + eps) - log(pA + eps),
 *   expert:             pE renormalised on A_t         (ablation w/o Contrast),
 *   onehot:             the expert's argmax, weight 1  (ablation w/o Contrast),
 * with the full context (prompt + expert prefix). The maths is libcommon/dist.
 *
 *   lr-contrast [options] [IN]     IN defaults to stdin; output to stdout
 *
 * A stream filter: one record in, at most one record out, constant memory.
 */
#include "dist.h"
#include "stream.h"
#include "util.h"

#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: lr-contrast [options] [IN]\n"
            "Reads `kl` records (lr-kl) from IN or stdin and writes one `example` record per\n"
            "step: the plausibility mask and the soft label over it (METHOD.md steps 5, 7, 8).\n"
            "\n"
            "  --alpha A        plausibility threshold factor (default 0.2)\n"
            "  --target T       contrast (default), expert (pE renormalised on the mask)\n"
            "                   or onehot (the expert's argmax): the paper's ablations\n"
            "  --strict-mask    refuse a step whose listed tokens cannot prove the mask\n"
            "                   complete (default: count such steps and warn)\n"
            "  -o, --output F   output stream (default stdout)\n"
            "  -q, --quiet      no summary on stderr\n"
            "  -h, --help       this help\n"
            "Exit codes: 0 ok, 1 usage, 2 bad input, 3 I/O error.\n");
}

typedef struct {
    double alpha;
    int target, strict, quiet;
    int64_t V;
    const lrs_header *in;
} ct_ctx;

static void pack_params(msgpack_packer *pk, void *p) {
    ct_ctx *c = p;
    msgpack_pack_map(pk, 4);
    lrs_pack_cstr(pk, "alpha"); msgpack_pack_double(pk, c->alpha);
    lrs_pack_cstr(pk, "target"); lrs_pack_cstr(pk, dist_target_name((dist_target_kind)c->target));
    lrs_pack_cstr(pk, "vocab"); msgpack_pack_int64(pk, c->V);
    lrs_pack_cstr(pk, "kl_params");
    msgpack_pack_object(pk, c->in->params ? *c->in->params : (msgpack_object){.type = MSGPACK_OBJECT_MAP});
}

static const char *paths_in;

static int run(ct_ctx *c, const char *in, const char *out, int argc, char **argv) {
    lrs_reader *r;
    int rc = lrs_open_read(&r, in, "kl");
    if (rc) return rc;
    c->in = lrs_header_of(r);
    const msgpack_object *pv = c->in->params ? lrs_get(c->in->params, "vocab") : NULL;
    if (!pv || pv->type != MSGPACK_OBJECT_POSITIVE_INTEGER || pv->via.u64 == 0) {
        lrs_close_read(r);
        return lr_err(LR_EINPUT, "%s: header: params.vocab missing (the common vocabulary lr-kl writes)", in);
    }
    c->V = (int64_t)pv->via.u64;
    lrs_header h;
    lrs_header_init(&h, "example", 1, "lr-contrast", argc, argv);
    h.model = c->in->model;
    h.tokenizer = c->in->tokenizer;
    lrs_writer *w;
    if ((rc = lrs_open_write(&w, out, &h, pack_params, c))) {
        lrs_close_read(r);
        return rc;
    }
    int32_t *ids = NULL, *tid = NULL, *scr = NULL;
    float *le = NULL, *la = NULL, *wt = NULL;
    int *sel = NULL;
    size_t cids = 0, cle = 0, cla = 0, nids, nle, nla, cap = 0;
    uint64_t n = 0, incomplete = 0, masksum = 0;
    const msgpack_object *rec;
    while ((rc = lrs_next(r, &rec)) == 1) {
        double te, ta, kl;
        if ((rc = lrs_get_i32s(r, rec, "ids", &ids, &cids, &nids)) ||
            (rc = lrs_get_f32s(r, rec, "lp_e", &le, &cle, &nle)) ||
            (rc = lrs_get_f32s(r, rec, "lp_a", &la, &cla, &nla)) || (rc = lrs_get_f64(r, rec, "tail_e", &te)) ||
            (rc = lrs_get_f64(r, rec, "tail_a", &ta)) || (rc = lrs_get_f64(r, rec, "kl", &kl)))
            break;
        if (nle != nids || nla != nids) {
            rc = lrs_field_err(r, nle != nids ? "lp_e" : "lp_a", "%zu entries for %zu ids", nle != nids ? nle : nla, nids);
            break;
        }
        if (nids > cap) {
            cap = nids;
            tid = xrealloc(tid, cap * sizeof *tid);
            scr = xrealloc(scr, DIST_CHECK_SCRATCH(cap) * sizeof *scr);
            wt = xrealloc(wt, cap * sizeof *wt);
            sel = xrealloc(sel, cap * sizeof *sel);
        }
        dist_step s = {(int)nids, ids, le, la, (float)te, (float)ta};
        const char *bad = dist_check(&s, c->in->model.vocab, scr);
        if (bad) { rc = lrs_field_err(r, "ids", "%s", bad); break; }
        if (!dist_mask_complete(&s, c->V, c->alpha)) {
            if (c->strict) {
                rc = lrs_field_err(r, "ids", "the listed tokens cannot prove the mask complete (tail %g may hold a "
                                   "token above alpha * max)", te);
                break;
            }
            incomplete++;
        }
        int m = dist_target(&s, c->V, c->alpha, (dist_target_kind)c->target, tid, wt, sel);
        if (m == 0) { rc = lrs_field_err(r, "lp_e", "empty plausibility mask (no listed token with p > 0)"); break; }
        masksum += (uint64_t)m;
        const msgpack_object *q = lrs_get(rec, "question");
        msgpack_packer *pk = lrs_pk(w);
        msgpack_pack_map(pk, 8 + (q != NULL));
        static const char *copy[] = {"id", "idx", "step", "prompt_len", "context"};
        for (int i = 0; i < 5; i++) { /* passed through without decoding */
            lrs_pack_cstr(pk, copy[i]);
            msgpack_pack_object(pk, *lrs_get(rec, copy[i]));
        }
        lrs_pack_cstr(pk, "target_ids"); lrs_pack_i32s(pk, tid, (size_t)m);
        lrs_pack_cstr(pk, "weights"); lrs_pack_f32s(pk, wt, (size_t)m);
        lrs_pack_cstr(pk, "kl"); msgpack_pack_double(pk, kl);
        if (q) { lrs_pack_cstr(pk, "question"); msgpack_pack_object(pk, *q); }
        if ((rc = lrs_record_done(w))) break;
        n++;
    }
    if (rc == 0) rc = lrs_close(w);
    else lrs_abort(w);
    if (!rc && !c->quiet) {
        fprintf(stderr, "lr-contrast: %" PRIu64 " examples (target %s, alpha %g), mean mask size %.2f", n,
                dist_target_name((dist_target_kind)c->target), c->alpha, n ? (double)masksum / (double)n : 0.0);
        if (incomplete)
            fprintf(stderr, "; warning: %" PRIu64 " masks may miss unlisted tokens (raise lr-infer's listing mass)",
                    incomplete);
        fputc('\n', stderr);
    }
    lrs_close_read(r);
    free(ids); free(le); free(la); free(tid); free(scr); free(wt); free(sel);
    return rc;
}

int main(int argc, char **argv) {
    lr_progname = "lr-contrast";
    setenv("LRS_ZSTD_LEVEL", "1", 0); /* small output; speed first (see lr-kl.c) */
    ct_ctx c = {.alpha = DIST_ALPHA, .target = DIST_CONTRAST};
    const char *out = "-";
    static const struct option opts[] = {
        {"alpha", required_argument, 0, 'a'}, {"target", required_argument, 0, 't'},
        {"strict-mask", no_argument, 0, 's'}, {"output", required_argument, 0, 'o'},
        {"quiet", no_argument, 0, 'q'},       {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int o;
    char *end;
    while ((o = getopt_long(argc, argv, "o:qh", opts, NULL)) != -1) {
        switch (o) {
        case 'a':
            c.alpha = strtod(optarg, &end);
            if (*end || !(c.alpha >= 0 && c.alpha <= 1)) lr_die(LR_EUSAGE, "--alpha: expected a number in [0, 1], got \"%s\"", optarg);
            break;
        case 't':
            if ((c.target = dist_target_parse(optarg)) < 0)
                lr_die(LR_EUSAGE, "--target: expected contrast, expert or onehot, got \"%s\"", optarg);
            break;
        case 's': c.strict = 1; break;
        case 'o': out = optarg; break;
        case 'q': c.quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return LR_EUSAGE;
        }
    }
    if (argc - optind > 1) {
        usage(stderr);
        return LR_EUSAGE;
    }
    paths_in = optind < argc ? argv[optind] : "-";
    int rc = run(&c, paths_in, out, argc, argv);
    return rc ? lr_fail(rc) : 0;
}
