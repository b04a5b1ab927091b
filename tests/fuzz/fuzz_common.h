/* Shared by the libFuzzer targets: the parsers under test read files by
 * path, so each input is written to one scratch file per process first. */
#ifndef LR_FUZZ_COMMON_H
#define LR_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Writes data to "<tmp>/lr-fuzz-<pid>/<name>" and returns that path
 * (static storage), or NULL when the file cannot be written. */
static inline const char *fuzz_file(const char *name, const uint8_t *data, size_t size) {
    static char dir[256], path[512];
    if (!dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/lr-fuzz-%ld", t && *t ? t : "/tmp", (long)getpid());
        char cmd[300];
        snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
        if (system(cmd) != 0) return NULL;
    }
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return NULL;
    size_t w = size ? fwrite(data, 1, size, f) : 0;
    if (fclose(f) || w != size) return NULL;
    return path;
}

#endif
