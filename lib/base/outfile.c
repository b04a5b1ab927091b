/* outfile: see outfile.h.
 *
 * The signal handler may only use async-signal-safe calls: registered
 * paths live in a fixed table of fixed-size strings (no malloc), files are
 * removed with unlink and folders with openat/getdents64/unlinkat, then
 * _exit(130). */
#include "base/outfile.h"

#include "base/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define OUT_MAX 32

struct lr_out {
    int slot;          /* index into reg[], -1 for stdout */
    int flags, dir;
    FILE *fp;
    char *path;        /* final name */
};

/* The registry the handler reads: tmp[0] == 0 marks a free slot. */
static struct {
    char tmp[PATH_MAX];
    volatile sig_atomic_t dir, keep;
} reg[OUT_MAX];
static volatile sig_atomic_t used[OUT_MAX];
static int installed;

/* Removes a folder tree without libc's allocating directory calls. */
static void rm_tree_at(int parent, const char *name, int depth) {
    if (depth > 16) return;
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (fd < 0) {
        unlinkat(parent, name, 0);
        return;
    }
    char buf[4096];
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (n <= 0) break;
        for (long off = 0; off < n;) {
            struct {
                unsigned long long ino;
                long long off;
                unsigned short reclen;
                unsigned char type;
                char name[];
            } *d = (void *)(buf + off);
            off += d->reclen;
            if (!strcmp(d->name, ".") || !strcmp(d->name, "..")) continue;
            if (d->type == DT_DIR) rm_tree_at(fd, d->name, depth + 1);
            else unlinkat(fd, d->name, 0);
        }
    }
    close(fd);
    unlinkat(parent, name, AT_REMOVEDIR);
}

static void remove_tmp(int i) {
    if (reg[i].dir) rm_tree_at(AT_FDCWD, reg[i].tmp, 0);
    else unlink(reg[i].tmp);
}

static void on_signal(int sig) {
    (void)sig;
    for (int i = 0; i < OUT_MAX; i++)
        if (used[i] && !reg[i].keep) remove_tmp(i);
    _exit(LR_EINTR);
}

static void at_exit(void) {
    for (int i = 0; i < OUT_MAX; i++)
        if (used[i] && !reg[i].keep) {
            remove_tmp(i);
            used[i] = 0;
        }
}

void out_signals(void) {
    if (installed) return;
    installed = 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaddset(&sa.sa_mask, SIGHUP);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    atexit(at_exit);
}

/* Registers tmp (signals blocked meanwhile so the handler never sees half
 * a path). Returns the slot or -1. */
static int reg_add(const char *tmp, int dir, int keep) {
    out_signals();
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    int slot = -1;
    for (int i = 0; i < OUT_MAX && slot < 0; i++)
        if (!used[i]) slot = i;
    if (slot >= 0) {
        snprintf(reg[slot].tmp, sizeof reg[slot].tmp, "%s", tmp);
        reg[slot].dir = dir;
        reg[slot].keep = keep;
        used[slot] = 1;
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    return slot;
}

static void reg_drop(int slot) {
    if (slot < 0) return;
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    used[slot] = 0;
    reg[slot].tmp[0] = 0;
    sigprocmask(SIG_SETMASK, &old, NULL);
}

static int tmp_name(char *dst, size_t n, const char *path, int keep) {
    int k = keep ? snprintf(dst, n, "%s.part", path) : snprintf(dst, n, "%s.part-%ld", path, (long)getpid());
    if (k < 0 || (size_t)k >= n) return lr_err(LR_EIO, "%s: path too long", path);
    return 0;
}

int out_open(lr_out **o, const char *path, int flags, FILE **fp) {
    *o = NULL;
    *fp = NULL;
    lr_out *w = xcalloc(1, sizeof *w);
    w->flags = flags;
    w->path = xstrdup(path);
    if (!strcmp(path, "-")) {
        w->slot = -1;
        w->fp = stdout;
        out_signals();
        *o = w;
        *fp = stdout;
        return 0;
    }
    char tmp[PATH_MAX];
    int rc = tmp_name(tmp, sizeof tmp, path, flags & OUT_KEEP);
    struct stat st;
    if (!rc && stat(path, &st) == 0 && S_ISDIR(st.st_mode)) rc = lr_err(LR_EUSAGE, "%s: is a folder", path);
    if (!rc && (w->slot = reg_add(tmp, 0, (flags & OUT_KEEP) != 0)) < 0)
        rc = lr_err(LR_EIO, "%s: too many open outputs", path);
    if (!rc && !(w->fp = fopen(tmp, (flags & OUT_APPEND) ? "ab" : "wb"))) {
        rc = lr_err(LR_EIO, "%s: cannot create: %s", tmp, strerror(errno));
        reg_drop(w->slot);
        w->slot = -1;
    }
    if (rc) {
        free(w->path);
        free(w);
        return rc;
    }
    *o = w;
    *fp = w->fp;
    return 0;
}

int out_open_dir(lr_out **o, const char *path, int flags, const char **tmpdir) {
    *o = NULL;
    struct stat st;
    if (stat(path, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) return lr_err(LR_EUSAGE, "%s: exists and is not a folder", path);
        if (!(flags & OUT_FORCE)) return lr_err(LR_EUSAGE, "%s: exists: give --force to replace it", path);
    }
    char tmp[PATH_MAX];
    int rc = tmp_name(tmp, sizeof tmp, path, flags & OUT_KEEP);
    if (rc) return rc;
    lr_out *w = xcalloc(1, sizeof *w);
    w->flags = flags;
    w->dir = 1;
    w->path = xstrdup(path);
    if ((w->slot = reg_add(tmp, 1, (flags & OUT_KEEP) != 0)) < 0) rc = lr_err(LR_EIO, "%s: too many open outputs", path);
    else if (!(flags & OUT_KEEP)) rm_tree_at(AT_FDCWD, tmp, 0); /* a stale one from a reused pid */
    if (!rc && mkdir(tmp, 0755) && !((flags & OUT_KEEP) && errno == EEXIST))
        rc = lr_err(LR_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    if (rc) {
        reg_drop(w->slot);
        free(w->path);
        free(w);
        return rc;
    }
    *o = w;
    *tmpdir = reg[w->slot].tmp;
    return 0;
}

const char *out_tmp(const lr_out *o) { return o->slot >= 0 ? reg[o->slot].tmp : o->path; }

static void out_free(lr_out **o, int remove) {
    lr_out *w = *o;
    if (w->slot >= 0) {
        if (remove && !reg[w->slot].keep) remove_tmp(w->slot);
        reg_drop(w->slot);
    }
    free(w->path);
    free(w);
    *o = NULL;
}

int out_commit(lr_out **o) {
    lr_out *w = *o;
    int rc = 0;
    if (w->fp) {
        if (fflush(w->fp) || ferror(w->fp) || (w->slot >= 0 && fsync(fileno(w->fp)) && errno != EINVAL))
            rc = lr_err(LR_EIO, "%s: write failed: %s", w->path, strerror(errno ? errno : EIO));
        if (w->fp != stdout && fclose(w->fp) && !rc) rc = lr_err(LR_EIO, "%s: write failed: %s", w->path, strerror(errno));
        w->fp = NULL;
    }
    if (!rc && w->slot >= 0) {
        const char *tmp = reg[w->slot].tmp;
        if (w->dir) {
            struct stat st;
            if (stat(w->path, &st) == 0) { /* OUT_FORCE, checked at open: the old one goes now */
                char old[PATH_MAX];
                snprintf(old, sizeof old, "%s.old-%ld", w->path, (long)getpid());
                if (rename(w->path, old)) rc = lr_err(LR_EIO, "%s: cannot replace: %s", w->path, strerror(errno));
                else if (rename(tmp, w->path)) {
                    rc = lr_err(LR_EIO, "%s: cannot rename into place: %s", w->path, strerror(errno));
                    rename(old, w->path);
                } else rm_tree_at(AT_FDCWD, old, 0);
            } else if (rename(tmp, w->path))
                rc = lr_err(LR_EIO, "%s: cannot rename into place: %s", w->path, strerror(errno));
        } else if (rename(tmp, w->path))
            rc = lr_err(LR_EIO, "%s: cannot rename into place: %s", w->path, strerror(errno));
    }
    if (!rc && w->slot >= 0) {
        reg_drop(w->slot);
        w->slot = -1;
    }
    out_free(o, 1);
    return rc;
}

void out_abort(lr_out **o) {
    if (!o || !*o) return;
    if ((*o)->fp && (*o)->fp != stdout) fclose((*o)->fp);
    (*o)->fp = NULL;
    out_free(o, 1);
}

/* Is `inner` (an existing path) the folder `outer` or inside it? */
static int inside(const char *outer, const char *inner) {
    char a[PATH_MAX], b[PATH_MAX];
    if (!realpath(outer, a) || !realpath(inner, b)) return 0;
    size_t n = strlen(a);
    return !strncmp(a, b, n) && (b[n] == 0 || b[n] == '/');
}

int out_check_inputs(const char *out, const char *const *inputs, int n) {
    if (!out || !strcmp(out, "-")) return 0;
    struct stat so;
    if (stat(out, &so)) return 0; /* a new name destroys nothing */
    for (int i = 0; i < n; i++) {
        const char *in = inputs[i];
        struct stat si;
        if (!in || !strcmp(in, "-") || stat(in, &si)) continue;
        if ((so.st_dev == si.st_dev && so.st_ino == si.st_ino) || (S_ISDIR(so.st_mode) && inside(out, in)))
            return lr_err(LR_EUSAGE, "%s: is also an input (%s): choose another output", out, in);
    }
    return 0;
}
