/* lr-mkmodel: writes a tiny random Qwen2/Llama model folder in Hugging Face
 * format (for tests and benchmarks), or checks an existing one (--check). */
#include "model/mkmodel.h"
#include "model/model.h"
#include "io/safetensors.h"
#include "base/util.h"

#include <math.h>
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
    "  --force           replace an existing OUT_DIR (else refused); the folder is\n"
    "                    written under a temporary name and renamed into place\n"
    "--check fails (exit 2) on a tensor holding NaN or inf.\n"
    "exit codes: 0 ok, 1 usage, 2 bad input, 3 I/O\n";

/* Every float tensor of s finite? (st_read_f32 refuses integer tensors,
 * which hold no NaN.) Names the first bad tensor and element. */
static int check_finite(const st_set *s, const char *path) {
    int rc = LR_OK;
    for (int i = 0; i < s->ntensors && !rc; i++) {
        const st_tensor *t = &s->tensors[i];
        size_t n = 1;
        for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
        float *x = xmalloc((n ? n : 1) * sizeof(float));
        if (!st_read_f32(s, t->name, t->ndim, t->shape, x))
            for (size_t k = 0; k < n && !rc; k++)
                if (!isfinite(x[k]))
                    rc = lr_err(LR_EINPUT, "%s: tensor %s: element %zu is %g: not finite", path, t->name, k, (double)x[k]);
        free(x);
    }
    return rc;
}

static int check(const char *path) {
    struct stat sb;
    if (stat(path, &sb)) return lr_err(LR_EIO, "%s: cannot stat", path);
    st_set s;
    if (S_ISDIR(sb.st_mode)) {
        model m;
        int rc = model_load(&m, path);
        if (rc) return rc;
        if (!(rc = st_open_dir(&s, path))) {
            rc = check_finite(&s, path);
            st_close(&s);
        }
        if (rc) {
            model_free(&m);
            return rc;
        }
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
    int rc = st_open_file(&s, path);
    if (rc) return rc;
    rc = check_finite(&s, path);
    for (int i = 0; i < s.ntensors && !rc; i++) {
        const st_tensor *t = &s.tensors[i];
        printf("%s %s [", t->name, st_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++) printf("%s%lld", d ? ", " : "", (long long)t->shape[d]);
        printf("]\n");
    }
    st_close(&s);
    return rc;
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
    if (!rc) rc = mk_save(out, &o);
    return rc ? lr_fail(rc) : 0;
}
