/* bench_stream: record stream write/read throughput against the zstd CLI on
 * the same payload, and the reader's peak RSS at two stream lengths.
 *
 * Payload: realistic `dist` records (128 steps, 8-64 listed tokens per step
 * with sorted log-probs, Qwen-sized token ids). Throughput counts
 * decompressed payload bytes per second. Baselines, run in the same process
 * on the same bytes: `zstd -3 -c` (write) and `zstd -d -c` (read).
 * Size: BENCH_STREAM_MB (default 1024). Files go to BENCH_DIR (default
 * build/bench-tmp) and are removed afterwards.
 */
#include "io/stream.h"
#include "base/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t rng = 88172645463325252ULL;
static uint32_t next_u32(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

static void pack_record(msgpack_packer *pk, int i) {
    enum { T = 128 };
    static int32_t prompt[120], tokens[T], ks[T], ids[T * 64];
    static float lp[T * 64], tail[T];
    int tot = 0;
    for (int j = 0; j < 120; j++) prompt[j] = next_u32() % 151936;
    for (int t = 0; t < T; t++) {
        tokens[t] = next_u32() % 151936;
        ks[t] = 8 + next_u32() % 57;
        float l = -(float)(next_u32() % 1000) / 1000.0f;
        for (int j = 0; j < ks[t]; j++) {
            ids[tot + j] = next_u32() % 151936;
            lp[tot + j] = l;
            l -= (float)(next_u32() % 4000) / 1000.0f;
        }
        tail[t] = (float)(next_u32() % 1000) * 1e-7f;
        tot += ks[t];
    }
    char id[32];
    snprintf(id, sizeof id, "gsm8k/train:%d", i);
    msgpack_pack_map(pk, 9);
    lrs_pack_cstr(pk, "id"); lrs_pack_cstr(pk, id);
    lrs_pack_cstr(pk, "idx"); msgpack_pack_int(pk, i);
    lrs_pack_cstr(pk, "prompt"); lrs_pack_i32s(pk, prompt, 120);
    lrs_pack_cstr(pk, "tokens"); lrs_pack_i32s(pk, tokens, T);
    lrs_pack_cstr(pk, "finish"); lrs_pack_cstr(pk, "length");
    lrs_pack_cstr(pk, "k"); lrs_pack_i32s(pk, ks, T);
    lrs_pack_cstr(pk, "top_ids"); lrs_pack_i32s(pk, ids, tot);
    lrs_pack_cstr(pk, "top_lp"); lrs_pack_f32s(pk, lp, tot);
    lrs_pack_cstr(pk, "tail"); lrs_pack_f32s(pk, tail, T);
}

/* Writes records until ~mb MiB of payload; returns the record count. */
static long write_stream(const char *path, double mb) {
    static char *argv[] = {"bench_stream"};
    lrs_header h;
    lrs_header_init(&h, "dist", 1, "bench_stream", 1, argv);
    lrs_writer *w;
    if (lrs_open_write(&w, path, &h, NULL, NULL)) lr_die(3, "%s", lr_errmsg());
    long n = 0;
    double bytes = 0;
    while (bytes < mb * 1048576.0) {
        size_t before = lrs_pk(w)->data ? ((msgpack_sbuffer *)lrs_pk(w)->data)->size : 0;
        pack_record(lrs_pk(w), (int)n);
        bytes += ((msgpack_sbuffer *)lrs_pk(w)->data)->size - before;
        if (lrs_record_done(w)) lr_die(3, "%s", lr_errmsg());
        n++;
    }
    if (lrs_close(w)) lr_die(3, "%s", lr_errmsg());
    return n;
}

/* Reads every record and touches its arrays as a consumer would. */
static long read_stream(const char *path) {
    lrs_reader *r;
    if (lrs_open_read(&r, path, "dist")) lr_die(2, "%s", lr_errmsg());
    const msgpack_object *rec;
    float *lp = NULL;
    int32_t *ids = NULL;
    size_t capf = 0, capi = 0, n;
    long count = 0;
    double sink = 0;
    int rc;
    while ((rc = lrs_next(r, &rec)) == 1) {
        if (lrs_get_f32s(r, rec, "top_lp", &lp, &capf, &n) || lrs_get_i32s(r, rec, "top_ids", &ids, &capi, &n))
            lr_die(2, "%s", lr_errmsg());
        sink += lp[0] + ids[0];
        count++;
    }
    if (rc) lr_die(2, "%s", lr_errmsg());
    free(lp);
    free(ids);
    lrs_close_read(r);
    return sink == 12345.678 ? -1 : count;
}

/* Runs read_stream in a child; returns its seconds and peak RSS in KiB. */
static double child_read(const char *path, long *rss_kb) {
    double t0 = lr_now();
    pid_t pid = fork();
    if (pid == 0) _exit(read_stream(path) > 0 ? 0 : 1);
    int status;
    struct rusage ru;
    wait4(pid, &status, 0, &ru);
    if (!WIFEXITED(status) || WEXITSTATUS(status)) lr_die(2, "reader child failed");
    *rss_kb = ru.ru_maxrss;
    return lr_now() - t0;
}

static double timed_system(const char *cmd) {
    double t0 = lr_now();
    if (system(cmd) != 0) lr_die(3, "failed: %s", cmd);
    return lr_now() - t0;
}

int main(void) {
    const char *mbs = getenv("BENCH_STREAM_MB");
    double mb = mbs ? atof(mbs) : 1024;
    const char *dir = getenv("BENCH_DIR") ? getenv("BENCH_DIR") : "build/bench-tmp";
    mkdir("build", 0755);
    mkdir(dir, 0755);
    char big[512], small[512], payload[512], zst[512], cmd[2048];
    snprintf(big, sizeof big, "%s/big.lrs", dir);
    snprintf(small, sizeof small, "%s/small.lrs", dir);
    snprintf(payload, sizeof payload, "%s/payload.bin", dir);
    snprintf(zst, sizeof zst, "%s/payload.zst", dir);

    double t0 = lr_now();
    long n = write_stream(big, mb);
    double t_write = lr_now() - t0;
    long rss_big, rss_small;
    double t_read = child_read(big, &rss_big);
    write_stream(small, mb / 10);
    child_read(small, &rss_small);

    /* The same payload through the zstd CLI (level 3 = our default). */
    snprintf(cmd, sizeof cmd, "zstd -q -d -c %s > %s", big, payload);
    timed_system(cmd);
    struct stat st, stz;
    stat(payload, &st);
    stat(big, &stz);
    snprintf(cmd, sizeof cmd, "zstd -q -3 -f -c %s > %s", payload, zst);
    double t_zc = timed_system(cmd);
    snprintf(cmd, sizeof cmd, "zstd -q -d -c %s > /dev/null", zst);
    double t_zd = timed_system(cmd);

    double mib = st.st_size / 1048576.0;
    printf("stream bench: %ld dist records, %.0f MiB payload, %.0f MiB compressed (%.2fx)\n", n, mib,
           stz.st_size / 1048576.0, (double)st.st_size / stz.st_size);
    printf("| operation | ours MiB/s | zstd CLI MiB/s | ratio (goal >= 0.5) |\n|---|---|---|---|\n");
    printf("| write (pack + compress) | %.0f | %.0f (zstd -3 -c) | %.2f |\n", mib / t_write, mib / t_zc,
           t_zc / t_write);
    printf("| read (decompress + validate + unpack) | %.0f | %.0f (zstd -d -c) | %.2f |\n", mib / t_read,
           mib / t_zd, t_zd / t_read);
    printf("reader peak RSS: %.1f MiB for %.0f MiB payload, %.1f MiB for %.0f MiB (ratio %.2f; flat = bounded)\n",
           rss_small / 1024.0, mib / 10, rss_big / 1024.0, mib, (double)rss_big / rss_small);
    unlink(big);
    unlink(small);
    unlink(payload);
    unlink(zst);
    return 0;
}
