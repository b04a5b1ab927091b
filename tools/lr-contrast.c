/* lr-contrast: METHOD.md stage 1, steps 5, 7 and 8. Turns each `kl` record
 * (a selected step) into one training `example`: the plausibility mask
 * A_t = {a : pE(a) >= alpha * max pE} and the soft label over it,
 *   contrast (default): softmax over A_t of log(pE + eps) - log(pA + eps),
 *   expert:             pE renormalised on A_t         (ablation w/o Contrast),
 *   onehot:             the expert's argmax, weight 1  (ablation w/o Contrast),
 * with the full context (prompt + expert prefix). The work is
 * lib/method/contrast (the maths: dist); this file is options, wiring and
 * exit codes.
 *
 *   lr-contrast [options] [IN]     IN defaults to stdin; output to stdout
 *
 * A stream filter: one record in, at most one record out, constant memory.
 *
 * Interoperability with the reference implementation's samples (the JSON
 * lines LightR_sampling.py writes and LightR_finetuning.py reads: prompt_id
 * = the question text, step, prefix = decoded expert prefix, tokens,
 * token_ids, weights, kl_divergence):
 *   lr-contrast --to-ref --tokenizer T [IN]     kl stream -> reference JSON lines
 *   lr-contrast --from-ref --tokenizer T [IN]   reference JSON lines -> example stream
 * --from-ref tokenizes as the reference's training does: the sampling prompt
 * (preset `lightreasoner`, or --prompt) rendered with the question, followed
 * by the prefix text, encoded as ONE string; prompt_len is the length of the
 * encoded prompt alone (the common prefix of the two encodings).
 */
#include "base/opt.h"
#include "base/outfile.h"
#include "base/util.h"
#include "io/stream.h"
#include "method/contrast.h"
#include "method/dist.h"
#include "model/prompt.h"
#include "model/tokenizer.h"

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>

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
            "  --to-ref         write the reference implementation's JSON lines instead\n"
            "                   of a stream (prompt_id = question, prefix = decoded text)\n"
            "  --from-ref       read the reference's JSON lines (IN) and write an example\n"
            "                   stream: question and prefix tokenized as its training does\n"
            "  --tokenizer T    tokenizer.json or model folder (for --to-ref, --from-ref)\n"
            "  --prompt P       prompt preset for --from-ref (default lightreasoner)\n"
            "  --vocab N        --from-ref: token ids below N are valid (the model's rows;\n"
            "                   default the tokenizer's size; --to-ref writes ids up to the\n"
            "                   stream's common vocabulary, decoded as \"\" past the tokenizer)\n"
            "  -o, --output F   output stream (default stdout)\n"
            "  --zstd-level N   compression level of the output, 1..19 (default 1: speed\n"
            "                   first, the examples are small)\n"
            "  -q, --quiet      no summary on stderr\n"
            "  -h, --help       this help\n"
            "Exit codes: 0 ok, 1 usage, 2 bad input, 3 I/O error.\n");
}

int main(int argc, char **argv) {
    lr_progname = "lr-contrast";
    contrast_opts c = {.alpha = DIST_ALPHA, .target = DIST_CONTRAST, .zstd_level = 1, .prompt = "lightreasoner",
                       .argc = argc, .argv = argv};
    const char *out = "-";
    int from = 0;
    static const struct option opts[] = {
        {"alpha", required_argument, 0, 'a'}, {"target", required_argument, 0, 't'},
        {"strict-mask", no_argument, 0, 's'}, {"output", required_argument, 0, 'o'},
        {"to-ref", no_argument, 0, 'R'},      {"from-ref", no_argument, 0, 'F'},
        {"tokenizer", required_argument, 0, 'T'}, {"prompt", required_argument, 0, 'P'},
        {"vocab", required_argument, 0, 'V'},
        {"quiet", no_argument, 0, 'q'},       {"help", no_argument, 0, 'h'},
        {"zstd-level", required_argument, 0, 'Z'},
        {0, 0, 0, 0},
    };
    int o;
    long vocab = 0;
    while ((o = getopt_long(argc, argv, "o:qh", opts, NULL)) != -1) {
        switch (o) {
        case 'a':
            if (opt_double("--alpha", optarg, 0, 1, &c.alpha)) return lr_fail(LR_EUSAGE);
            break;
        case 'V':
            if (opt_long("--vocab", optarg, 1, INT32_MAX, &vocab)) return lr_fail(LR_EUSAGE);
            break;
        case 't':
            if ((c.target = dist_target_parse(optarg)) < 0)
                lr_die(LR_EUSAGE, "--target: expected contrast, expert or onehot, got \"%s\"", optarg);
            break;
        case 's': c.strict = 1; break;
        case 'R': c.to_ref = 1; break;
        case 'F': from = 1; break;
        case 'T': c.tok_path = optarg; break;
        case 'P': c.prompt = optarg; break;
        case 'o': out = optarg; break;
        case 'q': c.quiet = 1; break;
        case 'Z':
            if (opt_int("--zstd-level", optarg, LRS_ZSTD_MIN, LRS_ZSTD_MAX, &c.zstd_level)) return lr_fail(LR_EUSAGE);
            break;
        case 'h': usage(stdout); return 0;
        default: lr_die(LR_EUSAGE, "%s: unknown option or missing value (see --help)", argv[optind - 1]);
        }
    }
    if (argc - optind > 1) lr_die(LR_EUSAGE, "expected at most one input (IN) (see --help)");
    const char *in = optind < argc ? argv[optind] : "-";
    if ((c.to_ref || from) && !c.tok_path) lr_die(LR_EUSAGE, "--to-ref and --from-ref need --tokenizer");
    if (c.to_ref && from) lr_die(LR_EUSAGE, "--to-ref and --from-ref exclude each other");
    if (from && !prompt_preset_template(c.prompt)) lr_die(LR_EUSAGE, "--prompt: unknown preset \"%s\"", c.prompt);
    if (vocab && !from) lr_die(LR_EUSAGE, "--vocab is for --from-ref");
    const char *ins[] = {in, c.tok_path};
    if (out_check_inputs(out, ins, c.tok_path ? 2 : 1)) return lr_fail(LR_EUSAGE);
    int rc = 0;
    if (c.tok_path) rc = tok_load(&c.tok, c.tok_path);
    if (!rc && from) {
        int64_t nv = tok_vocab_size(c.tok);
        c.vocab = vocab > nv ? vocab : nv; /* the model's rows past the tokenizer's ids are valid too */
        rc = contrast_from_ref(&c, in, out);
    } else if (!rc) {
        rc = contrast_run(&c, in, out);
    }
    tok_free(c.tok);
    return rc ? lr_fail(rc) : 0;
}
