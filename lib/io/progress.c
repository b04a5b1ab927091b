/* progress: see progress.h. */
#include "io/progress.h"

#include "base/util.h"

#include <stdio.h>

void progress_init(lr_progress *p, int enabled, const char *what, uint64_t total) {
    *p = (lr_progress){.on = enabled, .what = what, .total = total};
    p->t0 = p->last = lr_now();
}

static void fmt_time(char *buf, size_t n, double s) {
    if (s < 0 || s > 1e7) snprintf(buf, n, "?");
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, n, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

static void draw(const lr_progress *p, double now) {
    double el = now - p->t0;
    char eta[32] = "?", elapsed[32];
    if (p->total && p->done) fmt_time(eta, sizeof eta, el * (double)(p->total - p->done) / p->done);
    fmt_time(elapsed, sizeof elapsed, el);
    if (p->total)
        fprintf(stderr, "\r%s: %llu/%llu %s (%.1f%%), %.1f tok/s, %s elapsed, ETA %s   ", lr_progname,
                (unsigned long long)p->done, (unsigned long long)p->total, p->what, 100.0 * p->done / p->total,
                el > 0 ? p->tokens / el : 0.0, elapsed, eta);
    else
        fprintf(stderr, "\r%s: %llu %s, %.1f tok/s, %s elapsed   ", lr_progname, (unsigned long long)p->done,
                p->what, el > 0 ? p->tokens / el : 0.0, elapsed);
}

void progress_add(lr_progress *p, uint64_t items, uint64_t tokens) {
    p->done += items;
    p->tokens += tokens;
    if (!p->on) return;
    double now = lr_now();
    if (now - p->last < 0.2) return;
    p->last = now;
    draw(p, now);
}

void progress_end(lr_progress *p) {
    if (!p->on) return;
    draw(p, lr_now());
    fputc('\n', stderr);
}
