/* lr-merge: base model + PEFT LoRA adapter -> merged Hugging Face model
 * folder (bf16 by default) that this project and transformers load. The
 * folder is written under a temporary name and renamed into place, never
 * over an input; NaN or inf merged weights are refused (exit 2). */
#include "model/lora.h"
#include "model/merge.h"
#include "model/model.h"
#include "io/safetensors.h"
#include "base/outfile.h"
#include "base/util.h"

#include <getopt.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: lr-merge [--dtype bf16|f32] [--force] BASE_DIR ADAPTER_DIR OUT_DIR\n"
            "Folds the LoRA adapter (PEFT layout: adapter_config.json +\n"
            "adapter_model.safetensors) into the base model's weights, W += alpha/r B A,\n"
            "and writes a Hugging Face model folder: model.safetensors (--dtype, default\n"
            "bf16), config.json, generation_config.json and the tokenizer files.\n"
            "OUT_DIR appears only once complete; an existing one is refused unless\n"
            "--force, and OUT_DIR may never be BASE_DIR or ADAPTER_DIR.\n"
            "Exit codes: 0 ok, 1 usage, 2 bad input (also: merged weights not finite),\n"
            "3 I/O error, 130 interrupted.\n");
}

int main(int argc, char **argv) {
    lr_progname = "lr-merge";
    static const struct option opts[] = {{"dtype", 1, 0, 'd'}, {"force", 0, 0, 'f'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int c, dtype = ST_BF16, force = 0;
    opterr = 0; /* one line of our own instead */
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return 0;
        } else if (c == 'f') force = 1;
        else if (c == 'd') {
            if (!strcmp(optarg, "bf16")) dtype = ST_BF16;
            else if (!strcmp(optarg, "f32")) dtype = ST_F32;
            else return lr_fail(lr_err(LR_EUSAGE, "--dtype: \"%s\" (bf16 or f32)", optarg));
        } else return lr_fail(lr_err(LR_EUSAGE, "%s: unknown option or missing value (see --help)", argv[optind - 1]));
    }
    if (argc - optind != 3)
        return lr_fail(lr_err(LR_EUSAGE, "expected BASE_DIR ADAPTER_DIR OUT_DIR, got %d arguments (see --help)", argc - optind));
    const char *base = argv[optind], *adapter = argv[optind + 1], *out = argv[optind + 2];
    const char *inputs[] = {base, adapter};
    int rc = out_check_inputs(out, inputs, 2);
    if (rc) return lr_fail(rc);
    model m = {0};
    lora lo = {0};
    lr_out *w = NULL;
    const char *tmp;
    if ((rc = out_open_dir(&w, out, force ? OUT_FORCE : 0, &tmp))) goto done;
    if ((rc = model_load(&m, base))) goto done;
    if ((rc = lora_load(&lo, &m.cfg, adapter))) goto done;
    lora_merge(&m, &lo);
    if ((rc = model_save(&m, base, tmp, dtype))) goto done;
    rc = out_commit(&w);
done:
    out_abort(&w);
    lora_free(&lo);
    model_free(&m);
    if (rc) return lr_fail(rc);
    fprintf(stderr, "lr-merge: wrote %s (%s)\n", out, dtype == ST_BF16 ? "bf16" : "f32");
    return 0;
}
