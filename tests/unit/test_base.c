/* test_base: the shared base pieces. opt: every malformed, signed, NaN or
 * out-of-range value refused with one message naming the flag; rng: the
 * splitmix64 reference values (Vigna's splitmix64.c, seed 1234567); buf;
 * outfile: nothing under the final name before commit, temporaries removed
 * on abort, on exit() and on SIGTERM (exit 130), OUT_KEEP kept, folders
 * replaced only with OUT_FORCE, outputs that name an input refused. */
#include "check.h"

#include "base/buf.h"
#include "base/opt.h"
#include "base/outfile.h"
#include "base/rng.h"
#include "base/util.h"

#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static void test_opt(void) {
    long l;
    int i;
    uint64_t u;
    double d;
    CHECK(opt_long("--n", "42", 0, 100, &l) == 0 && l == 42);
    CHECK(opt_long("--n", "-3", -5, 5, &l) == 0 && l == -3);
    const char *badl[] = {"", "abc", "4x", " 4", "101", "-1", "99999999999999999999999", "0x10", NULL};
    for (int k = 0; badl[k]; k++) {
        l = 7;
        CHECKF(opt_long("--n", badl[k], 0, 100, &l) == LR_EUSAGE && l == 7, "\"%s\"", badl[k]);
        CHECKF(strstr(lr_errmsg(), "--n: expected an integer in [0, 100]") != NULL, "%s", lr_errmsg());
    }
    CHECK(opt_long("--n", NULL, 0, 1, &l) == LR_EUSAGE);
    CHECK(opt_int("--k", "2147483647", 0, 2147483647, &i) == 0 && i == 2147483647);
    CHECK(opt_int("--k", "2147483648", 0, 2147483647, &i) == LR_EUSAGE);
    CHECK(opt_u64("--seed", "18446744073709551615", &u) == 0 && u == UINT64_MAX);
    CHECK(opt_u64("--seed", "0", &u) == 0 && u == 0);
    const char *badu[] = {"-1", "+1", "abc", "", "18446744073709551616", "1.5", " 1", NULL};
    for (int k = 0; badu[k]; k++) CHECKF(opt_u64("--seed", badu[k], &u) == LR_EUSAGE, "\"%s\"", badu[k]);
    CHECK(strstr(lr_errmsg(), "--seed: expected an integer") != NULL);
    CHECK(opt_double("--lr", "5e-5", 0, 1, &d) == 0 && d == 5e-5);
    const char *badd[] = {"nan", "inf", "-inf", "1e30", "-0.1", "x", "", "1e-400", "0.1x", NULL};
    for (int k = 0; badd[k]; k++) CHECKF(opt_double("--lr", badd[k], 0, 1, &d) == LR_EUSAGE, "\"%s\"", badd[k]);
    CHECK(strstr(lr_errmsg(), "--lr: expected a number in [0, 1]") != NULL);
}

static void test_rng(void) {
    /* Reference: splitmix64.c (Vigna), x = 1234567 */
    uint64_t s = 1234567;
    const uint64_t want[3] = {6457827717110365317ULL, 3203168211198807973ULL, 9817491932198370423ULL};
    for (int k = 0; k < 3; k++) CHECK(rng_next(&s) == want[k]);
    s = 9;
    for (int k = 0; k < 1000; k++) {
        double u = rng_unit(&s);
        CHECK(u >= 0 && u < 1);
    }
    CHECK(rng_stream(1, 0) != rng_stream(1, 1) && rng_stream(1, 2) == rng_stream(1, 2));
}

static void test_buf(void) {
    lr_buf b = {0};
    char *e = buf_take(&b);
    CHECK(!strcmp(e, ""));
    free(e);
    for (int k = 0; k < 1000; k++) buf_printf(&b, "%d,", k % 10);
    CHECK(b.n == 2000 && b.p[b.n] == 0 && !strncmp(b.p, "0,1,2,", 6));
    buf_put(&b, NULL, 0);
    buf_putc(&b, 'x');
    CHECK(b.n == 2001 && b.p[2000] == 'x');
    buf_clear(&b);
    buf_puts(&b, "ab");
    char *s = buf_take(&b);
    CHECK(!strcmp(s, "ab") && b.p == NULL && b.n == 0);
    free(s);
    buf_free(&b);
}

static void test_outfile(const char *dir) {
    char path[1024], tmp[2048], sub[1024];
    snprintf(path, sizeof path, "%s/out.txt", dir);
    lr_out *o;
    FILE *fp;
    CHECK(out_open(&o, path, 0, &fp) == 0);
    snprintf(tmp, sizeof tmp, "%s", out_tmp(o));
    fputs("hello\n", fp);
    CHECK(!exists(path) && exists(tmp)); /* nothing under the final name yet */
    CHECK(out_commit(&o) == 0 && o == NULL);
    CHECK(exists(path) && !exists(tmp));
    /* abort keeps the old complete file and removes the temporary */
    CHECK(out_open(&o, path, 0, &fp) == 0);
    snprintf(tmp, sizeof tmp, "%s", out_tmp(o));
    fputs("half", fp);
    out_abort(&o);
    char *txt;
    size_t n;
    CHECK(!exists(tmp) && lr_read_file(path, &txt, &n) == 0 && !strcmp(txt, "hello\n"));
    free(txt);
    /* the same output as an input: refused */
    const char *ins[2] = {"-", path};
    CHECK(out_check_inputs(path, ins, 2) == LR_EUSAGE && strstr(lr_errmsg(), "is also an input"));
    char other[1024];
    snprintf(other, sizeof other, "%s/other.txt", dir);
    CHECK(out_check_inputs(other, ins, 2) == 0);
    /* a hard link is the same file */
    char link_[1024];
    snprintf(link_, sizeof link_, "%s/link.txt", dir);
    CHECK(link(path, link_) == 0 && out_check_inputs(link_, ins, 2) == LR_EUSAGE);
    /* a full disk is reported at commit, and nothing lands */
    if (exists("/dev/full")) {
        char fullp[1024];
        snprintf(fullp, sizeof fullp, "%s/full.txt", dir);
        CHECK(out_open(&o, fullp, 0, &fp) == 0);
        FILE *f2 = freopen("/dev/full", "wb", fp);
        CHECK(f2 != NULL);
        for (int k = 0; k < 100000; k++) fputs("xxxxxxxxxx", f2);
        CHECK(out_commit(&o) == LR_EIO && !exists(fullp));
    }
    /* OUT_KEEP: a fixed .part, kept when not committed, appended on resume */
    snprintf(sub, sizeof sub, "%s/keep.lrs", dir);
    CHECK(out_open(&o, sub, OUT_KEEP, &fp) == 0);
    fputs("ab", fp);
    out_abort(&o);
    snprintf(tmp, sizeof tmp, "%s.part", sub);
    CHECK(exists(tmp) && !exists(sub));
    CHECK(out_open(&o, sub, OUT_KEEP | OUT_APPEND, &fp) == 0);
    fputs("cd", fp);
    CHECK(out_commit(&o) == 0 && !exists(tmp));
    CHECK(lr_read_file(sub, &txt, &n) == 0 && !strcmp(txt, "abcd"));
    free(txt);
    /* folders: refused when present, replaced with OUT_FORCE once complete */
    char d[1024], f[2048];
    snprintf(d, sizeof d, "%s/model", dir);
    const char *td;
    CHECK(out_open_dir(&o, d, 0, &td) == 0);
    snprintf(f, sizeof f, "%s/a.json", td);
    FILE *g = fopen(f, "w");
    fputs("{}", g);
    fclose(g);
    CHECK(!exists(d));
    CHECK(out_commit(&o) == 0);
    snprintf(f, sizeof f, "%s/a.json", d);
    CHECK(exists(f));
    CHECK(out_open_dir(&o, d, 0, &td) == LR_EUSAGE && o == NULL && strstr(lr_errmsg(), "--force"));
    CHECK(out_open_dir(&o, d, OUT_FORCE, &td) == 0);
    snprintf(f, sizeof f, "%s/b.json", td);
    g = fopen(f, "w");
    fclose(g);
    snprintf(f, sizeof f, "%s/a.json", d);
    CHECK(exists(f)); /* the old one stays until the new one is complete */
    CHECK(out_commit(&o) == 0);
    CHECK(!exists(f));
    snprintf(f, sizeof f, "%s/b.json", d);
    CHECK(exists(f));
    /* an input inside the output folder */
    const char *in2[1] = {f};
    CHECK(out_check_inputs(d, in2, 1) == LR_EUSAGE);
}

/* In a child: open a file and a folder output (with a subfolder), then die
 * by `how`. The parent checks the exit status and that nothing is left. */
static void test_death(const char *dir, int how) {
    char path[1024], dpath[1024], tmp[700], dtmp[700];
    snprintf(path, sizeof path, "%s/die%d.txt", dir, how);
    snprintf(dpath, sizeof dpath, "%s/dir%d", dir, how);
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        lr_out *o, *od;
        FILE *fp;
        const char *td;
        if (out_open(&o, path, 0, &fp) || out_open_dir(&od, dpath, 0, &td)) _exit(99);
        fputs("partial", fp);
        fflush(fp);
        char sub[2048];
        snprintf(sub, sizeof sub, "%s/checkpoint-1", td);
        mkdir(sub, 0755);
        snprintf(sub, sizeof sub, "%s/checkpoint-1/w.bin", td);
        FILE *g = fopen(sub, "w");
        fputs("w", g);
        fclose(g);
        dprintf(pfd[1], "%s\n%s\n", out_tmp(o), td);
        close(pfd[1]);
        if (how == 0) raise(SIGTERM);
        if (how == 1) raise(SIGINT);
        exit(LR_EINPUT); /* how == 2: an error path that never commits */
    }
    close(pfd[1]);
    char names[1600] = {0};
    ssize_t k = read(pfd[0], names, sizeof names - 1);
    close(pfd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(k > 0);
    CHECK(sscanf(names, "%699s %699s", tmp, dtmp) == 2);
    int want = how == 2 ? LR_EINPUT : LR_EINTR;
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == want, "how %d: status %d", how, st);
    CHECKF(!exists(tmp) && !exists(dtmp) && !exists(path) && !exists(dpath), "how %d: left %s or %s", how, tmp, dtmp);
}

int main(void) {
    char dir[] = "/tmp/test_base.XXXXXX";
    const char *t = getenv("LR_TMP");
    char buf[512];
    if (t) {
        snprintf(buf, sizeof buf, "%s/base", t);
        mkdir(buf, 0755);
    } else if (!mkdtemp(dir)) return 1;
    const char *d = t ? buf : dir;
    test_opt();
    test_rng();
    test_buf();
    test_outfile(d);
    for (int how = 0; how < 3; how++) test_death(d, how);
    CHECK_DONE();
}
