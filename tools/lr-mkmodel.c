/* lr-mkmodel: writes a tiny random Qwen2/Llama model folder in Hugging Face
 * format (for tests and benchmarks), or checks an existing one (--check). */
#include "model/mkmodel.h"
#include "model/model.h"
#include "io/safetensors.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char USAGE[] =
    "usage: lr-mkmodel OUT_DIR [options]     write a random model folder\n"
    "       lr-mkmodel --check DIR|FILE.safetensors\n"
    "                                        validate a model folder (config + every tensor)\n"
    "                                        or one safetensors file; prints a summary\n"
    "options (defaults in brackets):\n"
    "  --arch qwen2|llama  [qwen2]       --layers N [2]      --hidden C [64]\n"
    "  --heads NH [4]      --kv-heads NKV [2]                --inter I [128]\n"
    "  --vocab V [300, or the copied tokenizer's size]      --rope-theta X [10000]\n"
    "  --tied | --untied [untied]        --bias | --no-bias [qwen2: bias, llama: none]\n"
    "  --dtype f32|bf16 [f32]            --seed S [1]        --max-pos N [4096]\n"
    "  --tokenizer PATH  copy this tokenizer.json (and its tokenizer_config.json)\n"
    "                    instead of writing the built-in byte-level BPE one\n"
    "exit codes: 0 ok, 1 usage, 2 bad input, 3 I/O\n";

static int check(const char *path) {
    struct stat sb;
    if (stat(path, &sb)) return lr_err(LR_EIO, "%s: cannot stat", path);
    if (S_ISDIR(sb.st_mode)) {
        model m;
        int rc = model_load(&m, path);
        if (rc) return rc;
        const mcfg *c = &m.cfg;
        printf("name %s\nhash %s\nmodel_type %s\nlayers %d\nhidden %d\nheads %d\nkv_heads %d\nhead_dim %d\n"
               "inter %d\nvocab %d\nrope_theta %g\ntied %d\nqkv_bias %d\nparams %zu\neos",
               m.name, m.hash_hex, c->model_type, c->L, c->C, c->NH, c->NKV, c->HD, c->I, c->V, c->rope_theta, c->tied,
               c->qkv_bias, m.nparams);
        for (int i = 0; i < c->neos; i++) printf(" %d", c->eos[i]);
        printf("\n");
        model_free(&m);
        return LR_OK;
    }
    st_set s;
    int rc = st_open_file(&s, path);
    if (rc) return rc;
    for (int i = 0; i < s.ntensors; i++) {
        const st_tensor *t = &s.tensors[i];
        printf("%s %s [", t->name, st_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++) printf("%s%lld", d ? ", " : "", (long long)t->shape[d]);
        printf("]\n");
    }
    st_close(&s);
    return LR_OK;
}

int main(int argc, char **argv) {
    lr_progname = "lr-mkmodel";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(USAGE, stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--check")) {
            if (i + 1 >= argc || argc != 3) return lr_fail(lr_err(LR_EUSAGE, "--check takes exactly one path (see --help)"));
            int rc = check(argv[i + 1]);
            return rc ? lr_fail(rc) : 0;
        }
    }
    mk_opts o;
    const char *out = NULL;
    int rc = mk_parse_args(&o, argc - 1, argv + 1, &out);
    if (!rc && !out) rc = lr_err(LR_EUSAGE, "missing OUT_DIR (see --help)");
    if (!rc) rc = mk_write_model(out, &o);
    return rc ? lr_fail(rc) : 0;
}
