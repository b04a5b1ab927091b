/* lr-merge: base model + PEFT LoRA adapter -> merged Hugging Face model
 * folder (bf16 by default) that this project and transformers load. */
#include "model/lora.h"
#include "model/merge.h"
#include "model/model.h"
#include "io/safetensors.h"
#include "base/util.h"

#include <getopt.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: lr-merge [--dtype bf16|f32] BASE_DIR ADAPTER_DIR OUT_DIR\n"
            "Folds the LoRA adapter (PEFT layout: adapter_config.json +\n"
            "adapter_model.safetensors) into the base model's weights, W += alpha/r B A,\n"
            "and writes a Hugging Face model folder: model.safetensors (--dtype, default\n"
            "bf16), config.json, generation_config.json and the tokenizer files.\n"
            "Exit codes: 0 ok, 1 usage, 2 bad input, 3 I/O error.\n");
}

int main(int argc, char **argv) {
    lr_progname = "lr-merge";
    static const struct option opts[] = {{"dtype", 1, 0, 'd'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int c, dtype = ST_BF16;
    opterr = 0; /* one line of our own instead of getopt's */
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return 0;
        } else if (c == 'd') {
            if (!strcmp(optarg, "bf16")) dtype = ST_BF16;
            else if (!strcmp(optarg, "f32")) dtype = ST_F32;
            else lr_die(LR_EUSAGE, "--dtype: \"%s\" (bf16 or f32)", optarg);
        } else {
            lr_die(LR_EUSAGE, "%s: unknown option or missing value (see --help)", argv[optind - 1]);
        }
    }
    if (argc - optind != 3) lr_die(LR_EUSAGE, "expected BASE_DIR ADAPTER_DIR OUT_DIR (see --help)");
    const char *base = argv[optind], *adapter = argv[optind + 1], *out = argv[optind + 2];
    model m;
    lora lo;
    int rc = model_load(&m, base);
    if (rc) return lr_fail(rc);
    if ((rc = lora_load(&lo, &m.cfg, adapter))) {
        model_free(&m);
        return lr_fail(rc);
    }
    lora_merge(&m, &lo);
    rc = model_save(&m, base, out, dtype);
    lora_free(&lo);
    model_free(&m);
    if (rc) return lr_fail(rc);
    fprintf(stderr, "lr-merge: wrote %s (%s)\n", out, dtype == ST_BF16 ? "bf16" : "f32");
    return 0;
}
