/* tpath.h: file names under a test's temporary folder. The test fills
 * tmpdir (mkdtemp or $TMPDIR) first; tpath(NAME) returns tmpdir/NAME from
 * one of four buffers in turn, so up to four paths can be in use at once. */
#ifndef LR_TPATH_H
#define LR_TPATH_H
#include <stdio.h>

static char tmpdir[512];

static inline const char *tpath(const char *name) {
    static char buf[4][600];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof buf[i], "%s/%s", tmpdir, name);
    return buf[i];
}
#endif
