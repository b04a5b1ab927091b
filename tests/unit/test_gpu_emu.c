/* gpu_emu: the emulated CUDA device (cuda/emu.cc) that the CUDA backend's
 * kernels are tested on: scheduler, barriers, shuffles, atomics, bf16,
 * wmma, asynchronous copies, runtime API and cublasGemmEx (cuda/emu_selftest.cu), the
 * reversed scheduling order (LR_EMU_ORDER=reverse), and the strict
 * checks that make undefined kernels abort, each in a child process. */
#include "check.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int emu_selftest_block_reduce(void);
int emu_selftest_coords(void);
int emu_selftest_dyn_smem(void);
int emu_selftest_warp(void);
int emu_selftest_atomics(void);
int emu_selftest_bf16(void);
int emu_selftest_gemm(void);
int emu_selftest_runtime(void);
int emu_selftest_graph(void);
int emu_selftest_bad_divergent_barrier(void);
int emu_selftest_bad_early_return(void);
int emu_selftest_bad_warp_exited(void);
int emu_selftest_bad_warp_exiting(void);
int emu_selftest_bad_warp_vs_barrier(void);
int emu_selftest_bad_partial_mask(void);
int emu_selftest_wmma(void);
int emu_selftest_bad_wmma_partial_warp(void);
int emu_selftest_bad_wmma_misaligned(void);
int emu_selftest_pipeline(void);
int emu_selftest_bad_pipeline_no_wait(void);
int emu_selftest_order(int reverse);
int emu_selftest_bad_host_pointer(void);

/* Runs fn in a child with stderr captured; checks that it died of SIGABRT
 * with a message containing every one of want[] (NULL-terminated). */
static void expect_abort(const char *label, int (*fn)(void), const char *const *want) {
    int fd[2];
    CHECK(pipe(fd) == 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], 2);
        int rc = fn();
        fprintf(stderr, "returned %d instead of aborting\n", rc);
        _exit(0);
    }
    close(fd[1]);
    char msg[8192];
    size_t len = 0;
    ssize_t r;
    while ((r = read(fd[0], msg + len, sizeof msg - 1 - len)) > 0) len += (size_t)r;
    msg[len] = 0;
    close(fd[0]);
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid);
    int ok = WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
    for (const char *const *w = want; *w; w++) ok = ok && strstr(msg, *w);
    if (!ok) fprintf(stderr, "%s: status %d, stderr:\n%s\n", label, st, msg);
    CHECK(ok);
}

int main(void) {
    /* the messages checked below name the threads that the default order
     * (LR_EMU_ORDER unset) reaches first */
    unsetenv("LR_EMU_ORDER");
    CHECK(emu_selftest_order(0) == 0);
    setenv("LR_EMU_ORDER", "reverse", 1);
    CHECK(emu_selftest_order(1) == 0);
    unsetenv("LR_EMU_ORDER");
    CHECK(emu_selftest_block_reduce() == 0);
    CHECK(emu_selftest_coords() == 0);
    CHECK(emu_selftest_dyn_smem() == 0);
    CHECK(emu_selftest_warp() == 0);
    CHECK(emu_selftest_atomics() == 0);
    CHECK(emu_selftest_bf16() == 0);
    CHECK(emu_selftest_gemm() == 0);
    CHECK(emu_selftest_runtime() == 0);
    CHECK(emu_selftest_graph() == 0);
    CHECK(emu_selftest_wmma() == 0);
    CHECK(emu_selftest_pipeline() == 0);

    const char *const w0[] = {"kernel divergent_barrier_kernel,", "block (0,0,0)", "thread (40,0,0)",
                              "divergent barrier", NULL};
    expect_abort("divergent barrier", emu_selftest_bad_divergent_barrier, w0);
    const char *const w1[] = {"kernel early_return_kernel,", "thread (8,0,0)", "after thread (0,0,0)", NULL};
    expect_abort("early return", emu_selftest_bad_early_return, w1);
    // Lane 0 returns before the others shuffle; lane 5 returns while lanes 0-4 wait in the shuffle.
    const char *const w2[] = {"kernel warp_exited_kernel,", "thread (1,0,0)", "after lanes of its warp returned", NULL};
    expect_abort("warp op with an exited lane", emu_selftest_bad_warp_exited, w2);
    const char *const w5[] = {"kernel warp_exited_kernel,", "thread (5,0,0)", "returned while other lanes of its warp wait",
                              NULL};
    expect_abort("lane exiting during a warp op", emu_selftest_bad_warp_exiting, w5);
    const char *const w3[] = {"kernel warp_vs_barrier_kernel,", "divergence", NULL};
    expect_abort("warp op against a barrier", emu_selftest_bad_warp_vs_barrier, w3);
    const char *const w4[] = {"kernel partial_mask_kernel,", "mask 0x0000ffff", NULL};
    expect_abort("partial mask", emu_selftest_bad_partial_mask, w4);
    // wmma is warp-collective: lanes 16-31 skip the store that lanes 0-15 wait in
    const char *const w6[] = {"kernel wmma_bad_kernel,", "returned while other lanes of its warp wait", NULL};
    expect_abort("wmma in a partial warp", emu_selftest_bad_wmma_partial_warp, w6);
    const char *const w7[] = {"kernel wmma_bad_kernel,", "not 32-byte aligned", NULL};
    expect_abort("wmma misaligned pointer", emu_selftest_bad_wmma_misaligned, w7);
    const char *const w8[] = {"kernel pipeline_kernel,", "thread (0,0,0)", "returned with 2 asynchronous copies", NULL};
    expect_abort("asynchronous copies never waited for", emu_selftest_bad_pipeline_no_wait, w8);
    const char *const w9[] = {"kernel dyn_smem_kernel:", "argument 0", "not device memory", NULL};
    expect_abort("a host pointer argument", emu_selftest_bad_host_pointer, w9);
    CHECK_DONE();
}
