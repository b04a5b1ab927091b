/* lr-kl: METHOD.md stage 1, steps 4 and 6: joins the expert's `dist` stream
 * with the amateur's and keeps the selected steps as `kl` records. The
 * join, the KL and the selection are method/kljoin.h's; this file holds the
 * options, the --stats file and the summary line.
 *
 *   lr-kl [options] EXPERT AMATEUR      (either may be "-", not both)
 */
#include "method/kljoin.h"
#include "method/dist.h"
#include "io/stream.h"
#include "base/opt.h"
#include "base/outfile.h"
#include "base/util.h"

#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: lr-kl [options] EXPERT AMATEUR\n"
            "Joins the expert's dist stream with the amateur's (lr-infer follow mode) and\n"
            "writes one `kl` record per selected step t >= 1 (METHOD.md stage 1, step 6):\n"
            "D_KL(pi_E || pi_A) over the full vocabulary with eps 1e-12, vocabularies\n"
            "truncated to the smaller. EXPERT or AMATEUR may be - (stdin).\n"
            "\n"
            "  --beta B          keep steps with KL >= B (default 0.4; 0 keeps every step)\n"
            "  --select MODE     kl (default): KL >= beta;\n"
            "                    random: as many steps as `kl` keeps, uniformly at random;\n"
            "                    lowest: as many steps, those with the lowest KL\n"
            "                    (random and lowest read the inputs twice: files only)\n"
            "  --seed N          seed for --select random (default 1)\n"
            "  --allow-missing   skip problems present in one stream only (and count them)\n"
            "  --stats FILE      write the KL histogram as TSV (kl_lo kl_hi steps kept)\n"
            "  -o, --output F    output stream (default stdout)\n"
            "  --zstd-level N    compression level of the output, 1..19 (default 1: the kl\n"
            "                    stream is an intermediate; 1 costs a third of level 3's\n"
            "                    time for a few %% more bytes)\n"
            "  -q, --quiet       no summary on stderr\n"
            "  -h, --help        this help\n"
            "Exit codes: 0 ok, 1 usage, 2 bad input, 3 I/O error.\n");
}

/* Options into *o; *help when --help was asked for (nothing else is then
 * checked). Returns 0 or LR_EUSAGE with the message set. */
static int parse_args(int argc, char **argv, klj_opts *o, const char **stats, int *quiet, int *help) {
    static const struct option opts[] = {
        {"beta", required_argument, 0, 'b'}, {"select", required_argument, 0, 's'},
        {"seed", required_argument, 0, 'S'}, {"allow-missing", no_argument, 0, 'm'},
        {"stats", required_argument, 0, 't'}, {"output", required_argument, 0, 'o'},
        {"quiet", no_argument, 0, 'q'},       {"help", no_argument, 0, 'h'},
        {"zstd-level", required_argument, 0, 'Z'},
        {0, 0, 0, 0},
    };
    int c, rc = 0;
    opterr = 0; /* one line of our own instead of getopt's */
    while (!rc && (c = getopt_long(argc, argv, "o:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'b': rc = opt_double("--beta", optarg, 0, 1e300, &o->beta); break;
        case 's':
            if (klj_select_from_name(optarg, &o->select))
                rc = lr_err(LR_EUSAGE, "--select: expected kl, random or lowest, got \"%s\"", optarg);
            break;
        case 'S': rc = opt_u64("--seed", optarg, &o->seed); break;
        case 'm': o->allow_missing = 1; break;
        case 't': *stats = optarg; break;
        case 'o': o->out = optarg; break;
        case 'q': *quiet = 1; break;
        case 'Z': rc = opt_int("--zstd-level", optarg, LRS_ZSTD_MIN, LRS_ZSTD_MAX, &o->zstd_level); break;
        case 'h': *help = 1; return 0;
        default: rc = lr_err(LR_EUSAGE, "%s: unknown option or missing value (see --help)", argv[optind - 1]);
        }
    }
    if (rc) return rc;
    if (argc - optind != 2) return lr_err(LR_EUSAGE, "expected two inputs, EXPERT and AMATEUR (see --help)");
    o->expert = argv[optind];
    o->amateur = argv[optind + 1];
    const char *paths[2] = {o->expert, o->amateur};
    if (!strcmp(paths[0], "-") && !strcmp(paths[1], "-"))
        return lr_err(LR_EUSAGE, "EXPERT and AMATEUR cannot both be stdin");
    if ((rc = out_check_inputs(o->out, paths, 2)) || (*stats && (rc = out_check_inputs(*stats, paths, 2))))
        return LR_EUSAGE;
    if (*stats && !strcmp(*stats, o->out)) return lr_err(LR_EUSAGE, "--stats and -o name the same file");
    return 0;
}

static int write_stats(const char *path, const klj_stats *st) {
    lr_out *o;
    FILE *f;
    int rc = out_open(&o, path, 0, &f);
    if (rc) return rc;
    klj_write_hist(st, f);
    return out_commit(&o);
}

static void summary(const klj_opts *o, const klj_stats *st) {
    fprintf(stderr,
            "lr-kl: %" PRIu64 " problems, %" PRIu64 " steps seen (t >= 1), %" PRIu64 " kept (%.2f%%, select %s, "
            "beta %g); KL p50 %.3f p90 %.3f p99 %.3f max %.4f",
            st->problems, st->steps, st->kept, st->steps ? 100.0 * (double)st->kept / (double)st->steps : 0.0,
            klj_select_name(o->select), o->beta, klj_quantile(st, 0.5), klj_quantile(st, 0.9),
            klj_quantile(st, 0.99), st->kl_max);
    if (o->allow_missing)
        fprintf(stderr, "; missing: %" PRIu64 " only in %s, %" PRIu64 " only in %s", st->only_expert, o->expert,
                st->only_amateur, o->amateur);
    fprintf(stderr, "; %" PRIu64 " exact (full rows), %" PRIu64 " undecided by the compact tails\n", st->exact,
            st->undecided);
}

int main(int argc, char **argv) {
    lr_progname = "lr-kl";
    /* Into a pipe (lr-kl | lr-contrast): a pipe buffer that holds a whole
     * ~1 MiB frame lets lr-kl run on instead of waiting for each 64 KiB to
     * drain (best effort: the kernel may refuse the size). */
    struct stat sb;
    if (fstat(1, &sb) == 0 && S_ISFIFO(sb.st_mode)) (void)fcntl(1, F_SETPIPE_SZ, 1 << 20);
    klj_opts o = {.out = "-", .beta = DIST_BETA, .select = KLJ_KL, .seed = 1, .zstd_level = 1, .argc = argc, .argv = argv};
    const char *stats = NULL;
    int quiet = 0, help = 0;
    int rc = parse_args(argc, argv, &o, &stats, &quiet, &help);
    if (!rc && help) {
        usage(stdout);
        return 0;
    }
    klj_stats st = {0};
    if (!rc) rc = klj_run(&o, &st);
    if (!rc && stats) rc = write_stats(stats, &st);
    if (!rc && !quiet) summary(&o, &st);
    klj_stats_free(&st);
    return rc ? lr_fail(rc) : 0;
}
