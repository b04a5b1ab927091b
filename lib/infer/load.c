/* load: see load.h. */
#include "infer/load.h"

#include "base/util.h"
#include "model/lora.h"
#include "model/merge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int apply_adapter(model *m, const char *dir) {
    lora lo;
    int rc = lora_load(&lo, &m->cfg, dir);
    if (rc) return rc;
    lora_merge(m, &lo);
    lora_free(&lo);
    char path[4096], *bytes;
    size_t n;
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if ((rc = lr_read_file(path, &bytes, &n))) return rc;
    uint64_t h = lr_fnv1a64(m->hash, bytes, n);
    free(bytes);
    snprintf(m->hash_hex, sizeof m->hash_hex, "%016llx", (unsigned long long)h);
    m->hash = h;
    const char *b = strrchr(dir, '/');
    size_t len = strlen(m->name) + strlen(b && b[1] ? b + 1 : dir) + 2;
    char *name = xmalloc(len);
    snprintf(name, len, "%s+%s", m->name, b && b[1] ? b + 1 : dir);
    free(m->name);
    m->name = name;
    return 0;
}

int inf_load_model(model *m, const char *dir, const char *adapter, int bf16_direct) {
    int rc = bf16_direct && !adapter ? model_open(m, dir) : model_load(m, dir);
    if (!rc && adapter) rc = apply_adapter(m, adapter);
    return rc;
}
