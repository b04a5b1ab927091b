/* emu: the emulated CUDA device behind cuda/emu.h (read its header comment
 * for what is and is not emulated).
 *
 * Scheduler. A block's threads are fibers with their own stacks (64 KiB,
 * 256 KiB under ASan, a guard page below each), taken from a pool when a
 * fiber first runs and returned when it ends, so only waiting fibers hold
 * one and kernels without barriers run on two warm stacks. A fiber runs until it waits at a barrier or returns; it then
 * switches straight to the next fiber of a FIFO ready queue, or back to the
 * launching context when the queue is empty, which means the block either
 * finished or deadlocked. The last arrival at a barrier releases it: it
 * queues the waiters and keeps running, so a barrier costs one switch per
 * waiting thread. A warp exchange needs a single barrier: lanes write into
 * one of two per-warp slot buffers chosen by the barrier's generation, and
 * a buffer is rewritten only two generations later, when every lane has
 * read it.
 *
 * Switching: on x86-64 a small assembly routine saves the callee-saved
 * registers and the FP control words (no signal-mask syscall as in
 * swapcontext, and nothing for ASan to intercept); elsewhere ucontext.
 * Under ASan every switch is announced with __sanitizer_start/finish_
 * switch_fiber so that ASan knows which stack is live. */
#include "emu.h"

#include <cblas.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <mutex>
#include <set>
#include <vector>

#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#else
#define EMU_ASAN 0
#endif

// EMU_UCONTEXT: switch with swapcontext even on x86-64 (to test that path).
#if defined(__x86_64__) && !defined(EMU_UCONTEXT)
#define EMU_ASM_SWITCH 1
#else
#define EMU_ASM_SWITCH 0
#include <ucontext.h>
#endif

uint3 emu_threadIdx, emu_blockIdx;
dim3 emu_blockDim, emu_gridDim;

namespace {

/* ---------------------------------------------------------------- contexts */

#if EMU_ASM_SWITCH
/* emu_ctx_switch(save, to): pushes rbp rbx r12-r15 and the MXCSR/x87 control
 * words, stores rsp in *save, loads rsp = to, pops the same and returns into
 * the other context. */
extern "C" void emu_ctx_switch(void **save, void *to);
asm(R"(
    .text
    .p2align 4
    .type emu_ctx_switch,@function
emu_ctx_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_ctx_switch, .-emu_ctx_switch
    .section .note.GNU-stack,"",@progbits
    .text
)");
#endif

struct Ctx {
#if EMU_ASM_SWITCH
    void *sp = nullptr;
#else
    ucontext_t uc;
#endif
    char *stack_lo = nullptr; // usable stack [stack_lo, stack_lo + stack_size)
    size_t stack_size = 0;
    void *fake_stack = nullptr; // ASan's fake stack of this context while it is switched out
};

enum State : unsigned char { RUNNABLE, AT_BLOCK_BAR, AT_WARP_BAR, DONE };

/* One __pipeline_memcpy_async: its source bytes, read at issue (so ASan
 * names the issuing line), written to dst only by the wait that completes
 * it. */
struct AsyncCopy {
    unsigned char *dst;
    unsigned char data[16];
    unsigned char size, src_size; // bytes written; of them, from the source (the rest zero-filled)
};

struct Fiber {
    Ctx ctx;
    uint3 tid;
    int id, lane, warp;
    State state;
    bool started; // has a stack and has run (fibers get stacks when they first run)
    // Asynchronous copies issued and not yet completed, oldest first: the
    // first `committed` of them belong to the committed groups, whose sizes
    // `groups` lists oldest first; the rest await __pipeline_commit.
    std::vector<AsyncCopy> copies;
    std::vector<size_t> groups;
    size_t committed;
};

struct Stack {
    char *lo;
    size_t size;
};

struct Warp {
    int arrived;           // lanes waiting at the current warp barrier
    int at_block_bar;      // lanes waiting at __syncthreads
    int done;              // lanes that returned
    unsigned gen;          // completed warp barriers
    unsigned char buf[2][32][64];
};

const size_t kStack = EMU_ASAN ? 256 << 10 : 64 << 10;
const size_t kColour = 16 << 10; // stack tops are staggered over this much so they do not share cache sets
const size_t kMaxExchange = 64;

// Launch state (one launch at a time).
std::atomic<bool> g_busy{false};
Ctx g_main;
std::vector<Fiber> g_fibers;
std::vector<Warp> g_warps;
std::vector<int> g_ready; // ring buffer of fiber ids
size_t g_rhead, g_rcount;
Fiber *g_cur;
int g_n, g_done, g_at_bar, g_first_done;
/* LR_EMU_ORDER=reverse: blocks run last first and a block's fibers start,
 * and are released from barriers, highest thread id first. A kernel that
 * is free of races between threads of a block (between two barriers) and
 * between blocks (within a launch) gives the same bits in either order;
 * one that reads what another thread writes without a barrier between, or
 * what an earlier block wrote, passes in one order only (a lower thread
 * that writes runs first by default). tests/run.sh runs the sanitizer
 * build's tests in this order and the release build's in the default one. */
bool g_reverse;
inline int ord(int k, int n) { return g_reverse ? n - 1 - k : k; }
unsigned g_bar_gen;     // completed block barriers
int g_bar_count[2];     // __syncthreads_count sums, by generation parity
const char *g_name;
const std::function<void()> *g_body;
unsigned char *g_smem;
size_t g_smem_size;
Ctx *g_prev; // the context the running fiber was switched from (ASan bookkeeping)
// Stacks: a fiber takes one when it first runs and gives it back when it
// returns, so a kernel without barriers cycles through two warm stacks and
// only fibers that wait hold one. A returning fiber still runs on its stack
// while it switches away, so the context it switches to releases it.
std::vector<Stack> g_stack_pool;
size_t g_stacks_made;
Stack g_zombie;
#if EMU_ASAN
const void *g_asan_lo;
size_t g_asan_size;
#endif

[[noreturn]] __attribute__((format(printf, 2, 3))) void fail(const Fiber *f, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (f)
        fprintf(stderr, "emu: kernel %s, block (%u,%u,%u), thread (%u,%u,%u): %s\n", g_name ? g_name : "?",
                emu_blockIdx.x, emu_blockIdx.y, emu_blockIdx.z, f->tid.x, f->tid.y, f->tid.z, msg);
    else
        fprintf(stderr, "emu: kernel %s, block (%u,%u,%u): %s\n", g_name ? g_name : "?", emu_blockIdx.x,
                emu_blockIdx.y, emu_blockIdx.z, msg);
    abort();
}

[[noreturn]] void fail_outside(const char *what) {
    fprintf(stderr, "emu: %s called outside a kernel\n", what);
    abort();
}

void set_current(Fiber *f) {
    g_cur = f;
    emu_threadIdx = f->tid;
}

void release_zombie() {
    if (g_zombie.lo) {
        g_stack_pool.push_back(g_zombie);
        g_zombie.lo = nullptr;
    }
}

Stack take_stack() {
    if (!g_stack_pool.empty()) {
        Stack s = g_stack_pool.back();
        g_stack_pool.pop_back();
        return s;
    }
    long page = sysconf(_SC_PAGESIZE);
    size_t len = kStack + kColour + page;
    void *p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        fprintf(stderr, "emu: cannot map a fiber stack of %zu bytes\n", len);
        abort();
    }
    mprotect(p, page, PROT_NONE); // guard page: a stack overflow faults instead of corrupting a neighbour
    size_t colour = (g_stacks_made++ * 1088) % kColour & ~(size_t)63;
    return Stack{(char *)p + page, kStack + colour};
}

/* Switches from `from` to `to`; returns when something switches back to
 * `from`. A dying context passes dying = true and never comes back. */
inline void do_switch(Ctx *from, Ctx *to, bool dying) {
    g_prev = from;
#if EMU_ASAN
    __sanitizer_start_switch_fiber(dying ? nullptr : &from->fake_stack, to->stack_lo, to->stack_size);
#else
    (void)dying;
#endif
#if EMU_ASM_SWITCH
    emu_ctx_switch(&from->sp, to->sp);
#else
    swapcontext(&from->uc, &to->uc);
#endif
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(from->fake_stack, nullptr, nullptr);
#endif
    release_zombie();
}

void ready_push(int id) {
    g_ready[(g_rhead + g_rcount++) % g_ready.size()] = id;
}

Fiber *ready_pop() {
    if (!g_rcount) return nullptr;
    int id = g_ready[g_rhead];
    g_rhead = (g_rhead + 1) % g_ready.size();
    g_rcount--;
    return &g_fibers[id];
}

void fiber_reset(Fiber *f);

void start_if_new(Fiber *f) {
    if (f->started) return;
    Stack s = take_stack();
    f->ctx.stack_lo = s.lo;
    f->ctx.stack_size = s.size;
    fiber_reset(f);
    f->started = true;
}

/* The running fiber stops (its state says why): run the next ready fiber, or
 * return to the launcher when there is none. */
void schedule(bool dying) {
    Fiber *self = g_cur, *next = ready_pop();
    if (dying) g_zombie = Stack{self->ctx.stack_lo, self->ctx.stack_size};
    if (next) {
        start_if_new(next);
        set_current(next);
        do_switch(&self->ctx, &next->ctx, dying);
    } else {
        g_cur = nullptr;
        do_switch(&self->ctx, &g_main, dying);
    }
}

[[noreturn]] void fiber_entry() {
#if EMU_ASAN
    // Where the switch came from: the launcher's stack bounds are learnt here.
    __sanitizer_finish_switch_fiber(nullptr, &g_asan_lo, &g_asan_size);
    if (g_prev == &g_main) {
        g_main.stack_lo = (char *)g_asan_lo;
        g_main.stack_size = g_asan_size;
    }
#endif
    release_zombie();
    (*g_body)();
    Fiber *self = g_cur;
    self->state = DONE;
    if (g_done++ == 0) g_first_done = self->id;
    Warp &w = g_warps[self->warp];
    w.done++;
    if (g_at_bar) fail(self, "returned while other threads of the block wait at __syncthreads() (divergent barrier)");
    if (w.arrived) fail(self, "returned while other lanes of its warp wait at a warp operation (shuffle/vote/__syncwarp)");
    if (!self->copies.empty())
        fail(self, "returned with %zu asynchronous copies (__pipeline_memcpy_async) no __pipeline_wait_prior completed",
             self->copies.size());
    schedule(true);
    __builtin_unreachable();
}

#if !EMU_ASM_SWITCH
void fiber_entry_uc() { fiber_entry(); }
#endif

/* Makes f start fiber_entry on its stack at the next switch to it. */
#if EMU_ASAN
__attribute__((no_sanitize_address))
#endif
void fiber_reset(Fiber *f) {
#if EMU_ASAN
    // The previous fiber on this stack died inside fiber_entry, whose frame
    // shadow may still be poisoned where the new start frame goes.
    __asan_unpoison_memory_region(f->ctx.stack_lo + f->ctx.stack_size - 4096, 4096);
#endif
#if EMU_ASM_SWITCH
    uintptr_t top = ((uintptr_t)f->ctx.stack_lo + f->ctx.stack_size) & ~(uintptr_t)15;
    uint64_t *sp = (uint64_t *)top;
    *--sp = 0;                        // fiber_entry's return address: none (it never returns)
    *--sp = (uint64_t)&fiber_entry;   // popped by emu_ctx_switch's ret
    for (int i = 0; i < 6; i++) *--sp = 0; // rbp rbx r12-r15
    *--sp = 0x1f80 | ((uint64_t)0x037f << 32); // MXCSR, x87 control word: the defaults
    f->ctx.sp = sp;
#else
    getcontext(&f->ctx.uc);
    f->ctx.uc.uc_stack.ss_sp = f->ctx.stack_lo;
    f->ctx.uc.uc_stack.ss_size = f->ctx.stack_size;
    f->ctx.uc.uc_link = nullptr;
    makecontext(&f->ctx.uc, fiber_entry_uc, 0);
#endif
}

void ensure_fibers(int n) {
    if ((int)g_fibers.size() < n) g_fibers.resize(n);
}

/* Nothing can run, some fibers have not returned: say why. */
[[noreturn]] void report_deadlock() {
    const Fiber *bar = nullptr, *warp = nullptr;
    for (int i = 0; i < g_n; i++) {
        const Fiber &f = g_fibers[i];
        if (f.state == AT_BLOCK_BAR && !bar) bar = &f;
        if (f.state == AT_WARP_BAR && !warp) warp = &f;
    }
    if (bar && warp)
        fail(warp,
             "deadlock: waits at a warp operation while thread (%u,%u,%u) waits at __syncthreads() (divergent "
             "barrier)",
             bar->tid.x, bar->tid.y, bar->tid.z);
    if (warp) fail(warp, "deadlock: a warp operation that not all 32 lanes reach");
    if (bar) fail(bar, "deadlock at __syncthreads()");
    fail(nullptr, "deadlock: no thread can run");
}

bool bad_config(dim3 g, dim3 b, size_t smem) {
    if (!g.x || !g.y || !g.z || !b.x || !b.y || !b.z) return true;
    if (g.x > 0x7fffffffu || g.y > 65535 || g.z > 65535) return true;
    if (b.x > 1024 || b.y > 1024 || b.z > 64 || (uint64_t)b.x * b.y * b.z > 1024) return true;
    return smem > 232448; // sm_90's opt-in maximum per block
}

cudaError_t g_last_error = cudaSuccess;
std::mutex g_err_mu;

cudaError_t set_error(cudaError_t e) {
    if (e != cudaSuccess) {
        std::lock_guard<std::mutex> lk(g_err_mu);
        g_last_error = e;
    }
    return e;
}

} // namespace

/* ------------------------------------------------------------------ launch */

/* Launches that ran, by kernel name as LAUNCH spells it: their count
 * (emu_kernel_launches) and the largest block and dynamic shared memory
 * any of them asked for. With LR_EMU_LAUNCH_DIR set, a process leaves them
 * in a file of its own there when it exits (launch_log), so that
 * tests/cuda_resources.py can check every configuration the test suite
 * launched against the registers and shared memory ptxas gave each
 * kernel on sm_90: what a card would refuse or run at a lower occupancy
 * than the code assumes, and the emulator cannot see. */
namespace {
struct launch_rec {
    std::string file; /* the launching source file, as __FILE__ spells it */
    size_t count = 0, smem_max = 0;
    unsigned threads_min = 0, threads_max = 0;
};
std::mutex g_count_mu;

struct launch_log {
    std::map<std::string, launch_rec> recs;
    ~launch_log() { /* at exit: runs after main returns or exit(), not after abort or _exit */
        const char *dir = getenv("LR_EMU_LAUNCH_DIR");
        if (!dir || !*dir || recs.empty()) return;
        std::string path = std::string(dir) + "/launches.XXXXXX", text;
        std::vector<char> tmpl(path.begin(), path.end());
        tmpl.push_back(0);
        int fd = mkstemp(tmpl.data()); /* unique even when a later process reuses this pid */
        if (fd < 0) {
            fprintf(stderr, "emu: LR_EMU_LAUNCH_DIR=%s: cannot create a file there\n", dir);
            return;
        }
        char line[512];
        for (auto &kv : recs) {
            const launch_rec &r = kv.second;
            snprintf(line, sizeof line, "%s %s %zu %u %u %zu\n", r.file.c_str(), kv.first.c_str(), r.count,
                     r.threads_min, r.threads_max, r.smem_max);
            text += line;
        }
        ssize_t w = write(fd, text.data(), text.size());
        if (w != (ssize_t)text.size()) fprintf(stderr, "emu: %s: short write\n", tmpl.data());
        close(fd);
    }
};
launch_log g_launches;
} // namespace

extern "C" size_t emu_kernel_launches(const char *name) {
    std::lock_guard<std::mutex> lk(g_count_mu);
    auto it = g_launches.recs.find(name);
    return it == g_launches.recs.end() ? 0 : it->second.count;
}

static void count_launch(const char *name, const char *file, unsigned threads, size_t smem) {
    std::lock_guard<std::mutex> lk(g_count_mu);
    launch_rec &r = g_launches.recs[name];
    if (!r.count) r.file = file, r.threads_min = threads;
    r.count++;
    if (threads < r.threads_min) r.threads_min = threads;
    if (threads > r.threads_max) r.threads_max = threads;
    if (smem > r.smem_max) r.smem_max = smem;
}

/* Runs a launch whose configuration was checked (emu_launch, or a graph). */
static void run_launch(dim3 grid, dim3 block, size_t smem, const std::function<void()> &body, const char *name,
                       const char *file) {
    count_launch(name, file, block.x * block.y * block.z, smem);
    if (g_busy.exchange(true)) {
        fprintf(stderr, "emu: launch of %s while another launch runs (from a kernel or a second host thread)\n",
                name);
        abort();
    }
    const char *order = getenv("LR_EMU_ORDER"); /* read at every launch: a test may switch it */
    if (order && *order && strcmp(order, "reverse") && strcmp(order, "forward")) {
        fprintf(stderr, "emu: LR_EMU_ORDER=%s: forward or reverse\n", order);
        exit(2);
    }
    g_reverse = order && !strcmp(order, "reverse");
    int n = (int)(block.x * block.y * block.z);
    ensure_fibers(n);
    int nwarps = (n + 31) / 32;
    if ((int)g_warps.size() < nwarps) g_warps.resize(nwarps);
    if ((int)g_ready.size() < n) g_ready.resize(n);
    g_n = n;
    g_name = name;
    g_body = &body;
    g_smem_size = smem;
    /* aligned like a card's shared memory window, so that alignment checks
     * (wmma's 32 bytes) judge the kernel's offsets, not malloc's */
    void *sm = nullptr;
    g_smem = posix_memalign(&sm, 128, smem ? smem : 1) ? nullptr : (unsigned char *)sm;
    if (!g_smem) {
        fprintf(stderr, "emu: out of memory for %zu bytes of dynamic shared memory\n", smem);
        abort();
    }
    emu_gridDim = grid;
    emu_blockDim = block;
    for (int i = 0; i < n; i++) {
        Fiber &f = g_fibers[i];
        f.id = i;
        f.lane = i % 32;
        f.warp = i / 32;
        f.tid.x = i % block.x;
        f.tid.y = i / block.x % block.y;
        f.tid.z = i / (block.x * block.y);
    }
    for (unsigned bz0 = 0; bz0 < grid.z; bz0++)
        for (unsigned by0 = 0; by0 < grid.y; by0++)
            for (unsigned bx0 = 0; bx0 < grid.x; bx0++) {
                unsigned bx = (unsigned)ord((int)bx0, (int)grid.x), by = (unsigned)ord((int)by0, (int)grid.y),
                         bz = (unsigned)ord((int)bz0, (int)grid.z);
                emu_blockIdx = uint3{bx, by, bz};
                memset(g_smem, 0xff, smem);
                for (int w = 0; w < nwarps; w++) {
                    Warp &wp = g_warps[w];
                    wp.arrived = wp.at_block_bar = wp.done = 0;
                    wp.gen = 0;
                }
                for (int i = 0; i < n; i++) {
                    g_fibers[i].state = RUNNABLE;
                    g_fibers[i].started = false;
                    g_fibers[i].copies.clear();
                    g_fibers[i].groups.clear();
                    g_fibers[i].committed = 0;
                }
                g_done = g_at_bar = 0;
                g_bar_gen = 0;
                g_bar_count[0] = g_bar_count[1] = 0;
                g_first_done = -1;
                g_rhead = 0;
                g_rcount = 0;
                for (int i = 1; i < n; i++) ready_push(ord(i, n));
                Fiber *f0 = &g_fibers[ord(0, n)];
                start_if_new(f0);
                set_current(f0);
                do_switch(&g_main, &f0->ctx, false);
                if (g_done != n) report_deadlock();
            }
    free(g_smem);
    g_smem = nullptr;
    g_cur = nullptr;
    g_busy = false;
}

void *emu_dyn_smem() {
    if (!g_cur) fail_outside("emu_dyn_smem (DYN_SMEM)");
    return g_smem;
}

int emu_lane() {
    if (!g_cur) fail_outside("a warp operation");
    return g_cur->lane;
}

void __syncthreads() { (void)__syncthreads_count(0); }

/* The block barrier. Predicates are summed per barrier generation into one
 * of two counters: counter g&1 is cleared when barrier g-1 releases, after
 * every thread has read barrier g-2's sum from it. */
int __syncthreads_count(int pred) {
    Fiber *self = g_cur;
    if (!self) fail_outside("__syncthreads()");
    if (g_done) {
        const Fiber &d = g_fibers[g_first_done];
        fail(self, "__syncthreads() reached after thread (%u,%u,%u) of the block returned (divergent barrier)", d.tid.x,
             d.tid.y, d.tid.z);
    }
    Warp &w = g_warps[self->warp];
    if (w.arrived)
        fail(self, "__syncthreads() reached while other lanes of its warp wait at a warp operation (divergence)");
    unsigned gen = g_bar_gen;
    g_bar_count[gen & 1] += pred != 0;
    if (++g_at_bar == g_n) {
        // Release: everyone else waits here, so the ready queue is empty.
        g_at_bar = 0;
        g_bar_gen++;
        g_bar_count[(gen + 1) & 1] = 0;
        for (int k = 0; k < g_n; k++) {
            int i = ord(k, g_n);
            Fiber &f = g_fibers[i];
            if (&f == self) continue;
            f.state = RUNNABLE;
            ready_push(i);
        }
        for (int i = 0; i < (g_n + 31) / 32; i++) g_warps[i].at_block_bar = 0;
        return g_bar_count[gen & 1];
    }
    self->state = AT_BLOCK_BAR;
    w.at_block_bar++;
    schedule(false);
    return g_bar_count[gen & 1];
}

namespace {

/* Waits until all 32 lanes of the caller's warp have arrived, after writing
 * size bytes of `mine` into the slot buffer; returns that buffer. */
unsigned char (*warp_barrier(unsigned mask, const void *mine, size_t size, const char *what))[64] {
    Fiber *self = g_cur;
    if (!self) fail_outside(what);
    if (mask != 0xffffffffu) fail(self, "%s with mask 0x%08x: only full-warp masks are supported", what, mask);
    if (g_n % 32) fail(self, "%s in a block of %d threads, not a multiple of 32", what, g_n);
    if (size > kMaxExchange) fail(self, "%s of %zu bytes (at most %zu)", what, size, kMaxExchange);
    Warp &w = g_warps[self->warp];
    if (w.done) fail(self, "%s after lanes of its warp returned", what);
    if (w.at_block_bar)
        fail(self, "%s while other lanes of its warp wait at __syncthreads() (divergence)", what);
    unsigned gen = w.gen;
    auto buf = w.buf[gen & 1];
    if (size) memcpy(buf[self->lane], mine, size);
    if (++w.arrived == 32) {
        w.arrived = 0;
        w.gen++;
        int base = self->warp * 32;
        for (int k = 0; k < 32; k++) {
            int i = base + ord(k, 32);
            Fiber &f = g_fibers[i];
            if (&f == self) continue;
            f.state = RUNNABLE;
            ready_push(i);
        }
    } else {
        self->state = AT_WARP_BAR;
        schedule(false);
    }
    return buf;
}

} // namespace

void emu_warp_exchange(unsigned mask, const void *mine, void *out, size_t size, int src_lane) {
    if (g_cur && (src_lane < 0 || src_lane > 31)) fail(g_cur, "warp exchange from lane %d", src_lane);
    auto buf = warp_barrier(mask, mine, size, "warp operation (shuffle/__syncwarp)");
    if (size) memcpy(out, buf[src_lane], size);
}

void emu_warp_allgather(unsigned mask, const void *mine, void *out, size_t size) {
    auto buf = warp_barrier(mask, mine, size, "warp vote (__ballot_sync/__all_sync/__any_sync/__match_any_sync)");
    /* every lane of every vote copies 32 values: fixed sizes copy inline,
     * which keeps kernels that vote per element (histograms) fast here */
    unsigned char *o = (unsigned char *)out;
    if (size == 4)
        for (int i = 0; i < 32; i++) memcpy(o + i * 4, buf[i], 4);
    else if (size == 8)
        for (int i = 0; i < 32; i++) memcpy(o + i * 8, buf[i], 8);
    else
        for (int i = 0; i < 32; i++) memcpy(o + i * size, buf[i], size);
}

/* ------------------------------------------------------- asynchronous copies */

/* Issue: checked as cuda_pipeline.h asserts, recorded, and the destination
 * poisoned (0xFF bytes: NaN as float and bf16) so that reading it before
 * the wait that completes the copy gives NaN, not the data. */
void __pipeline_memcpy_async(void *dst_shared, const void *src_global, size_t size_and_align, size_t zfill) {
    Fiber *self = g_cur;
    if (!self) fail_outside("__pipeline_memcpy_async");
    size_t n = size_and_align;
    if (n != 4 && n != 8 && n != 16) fail(self, "__pipeline_memcpy_async of %zu bytes (4, 8 or 16)", n);
    if (zfill > n) fail(self, "__pipeline_memcpy_async: zfill %zu above the size %zu", zfill, n);
    unsigned char *d = (unsigned char *)dst_shared;
    const unsigned char *src = (const unsigned char *)src_global;
    if ((uintptr_t)d % n || (uintptr_t)src % n)
        fail(self, "__pipeline_memcpy_async: destination %p or source %p not %zu-byte aligned", dst_shared, src_global, n);
    if (!g_smem || d < g_smem || d + n > g_smem + g_smem_size)
        fail(self, "__pipeline_memcpy_async: destination %p outside the block's dynamic shared memory", dst_shared);
    if (src + n > g_smem && src < g_smem + g_smem_size)
        fail(self, "__pipeline_memcpy_async: source %p in shared memory (must be global)", src_global);
    AsyncCopy c;
    c.dst = d, c.size = (unsigned char)n, c.src_size = (unsigned char)(n - zfill);
    if (c.src_size) memcpy(c.data, src, c.src_size);
    self->copies.push_back(c);
    memset(d, 0xff, n);
}

void __pipeline_commit() {
    Fiber *self = g_cur;
    if (!self) fail_outside("__pipeline_commit");
    self->groups.push_back(self->copies.size() - self->committed);
    self->committed = self->copies.size();
}

/* Completes (writes) every committed group but the newest `prior` (at most
 * 8 are told apart, as in cuda_pipeline.h); uncommitted copies stay
 * pending. */
void __pipeline_wait_prior(size_t prior) {
    Fiber *self = g_cur;
    if (!self) fail_outside("__pipeline_wait_prior");
    if (prior > 8) prior = 8;
    size_t ng = self->groups.size();
    if (ng <= prior) return;
    size_t n = 0;
    for (size_t g = 0; g < ng - prior; g++) n += self->groups[g];
    for (size_t i = 0; i < n; i++) {
        const AsyncCopy &c = self->copies[i];
        memcpy(c.dst, c.data, c.src_size);
        memset(c.dst + c.src_size, 0, c.size - c.src_size);
    }
    self->copies.erase(self->copies.begin(), self->copies.begin() + n);
    self->groups.erase(self->groups.begin(), self->groups.begin() + (ng - prior));
    self->committed -= n;
}

/* ------------------------------------------------------------------ wmma */

namespace {

/* Element e = row * 16 + col of a fragment's 16x16 tile sits in slot
 * (e * kMul[use] + kAdd[use]) mod 256, i.e. lane slot / 8, x[slot % 8]:
 * odd multipliers make these bijections, and none is row-major. */
const unsigned kMul[3] = {37, 101, 173}, kAdd[3] = {11, 200, 5};

int wmma_slot(int use, int e) { return (int)((e * kMul[use] + kAdd[use]) & 255u); }

/* The element held in slot s (the inverse map), tables built once. */
int wmma_elem(int use, int s) {
    static int inv[3][256];
    static bool built;
    if (!built) {
        for (int u = 0; u < 3; u++)
            for (int e = 0; e < 256; e++) inv[u][wmma_slot(u, e)] = e;
        built = true;
    }
    return inv[use][s];
}

/* The collective part of a load or store: every lane passes the same
 * pointer, ldm and layout; the pointer and row stride meet CUDA's alignment. */
void wmma_meet(const char *what, const void *p, size_t esize, unsigned ldm, int col_major) {
    struct {
        const void *p;
        unsigned ldm;
        int col;
    } mine = {p, ldm, col_major}, all[32];
    emu_warp_allgather(0xffffffffu, &mine, all, sizeof mine);
    for (int i = 0; i < 32; i++)
        if (all[i].p != p || all[i].ldm != ldm || all[i].col != col_major)
            fail(g_cur, "%s: lane %d passes pointer %p ldm %u, lane %d %p ldm %u (must be warp-uniform)", what, i,
                 all[i].p, all[i].ldm, emu_lane(), p, ldm);
    if ((uintptr_t)p % 32) fail(g_cur, "%s: pointer %p not 32-byte aligned", what, p);
    if (ldm * esize % 16) fail(g_cur, "%s: ldm %u elements is no multiple of 16 bytes", what, ldm);
}

size_t wmma_offset(int e, unsigned ldm, int col_major) {
    int r = e / 16, c = e % 16;
    return col_major ? (size_t)c * ldm + r : (size_t)r * ldm + c;
}

} // namespace

void emu_wmma_load(int use, void *x, const void *p, size_t esize, unsigned ldm, int col_major) {
    wmma_meet("wmma::load_matrix_sync", p, esize, ldm, col_major);
    int lane = emu_lane();
    for (int i = 0; i < 8; i++)
        memcpy((char *)x + i * esize,
               (const char *)p + wmma_offset(wmma_elem(use, lane * 8 + i), ldm, col_major) * esize, esize);
}

void emu_wmma_store(void *p, const float *x, unsigned ldm, int col_major) {
    wmma_meet("wmma::store_matrix_sync", p, sizeof *x, ldm, col_major);
    int lane = emu_lane();
    for (int i = 0; i < 8; i++) ((float *)p)[wmma_offset(wmma_elem(2, lane * 8 + i), ldm, col_major)] = x[i];
}

void emu_wmma_mma(float *d, const __nv_bfloat16 *a, const __nv_bfloat16 *b, const float *c) {
    struct Frags {
        __nv_bfloat16 a[8], b[8];
        float c[8];
    } mine, all[32];
    static_assert(sizeof(Frags) == kMaxExchange, "one exchange carries the three fragments");
    memcpy(mine.a, a, sizeof mine.a), memcpy(mine.b, b, sizeof mine.b), memcpy(mine.c, c, sizeof mine.c);
    emu_warp_allgather(0xffffffffu, &mine, all, sizeof mine);
    float A[256], B[256], C[256];
    for (int s = 0; s < 256; s++) {
        A[wmma_elem(0, s)] = (float)all[s / 8].a[s % 8];
        B[wmma_elem(1, s)] = (float)all[s / 8].b[s % 8];
        C[wmma_elem(2, s)] = all[s / 8].c[s % 8];
    }
    int lane = emu_lane();
    for (int i = 0; i < 8; i++) {
        int e = wmma_elem(2, lane * 8 + i), r = e / 16, col = e % 16;
        float acc = C[e];
        for (int k = 0; k < 16; k++) acc += A[r * 16 + k] * B[k * 16 + col];
        d[i] = acc;
    }
}

/* ------------------------------------------------------------- runtime API */

struct emu_stream {
    int magic;
    bool capturing; /* between cudaStreamBeginCapture and cudaStreamEndCapture */
    bool invalid;   /* the capture was invalidated: EndCapture gives no graph */
    std::vector<std::function<void()>> nodes; /* what the capture recorded */
};
struct emu_graph {
    std::vector<std::function<void()>> nodes;
};
struct emu_graph_exec {
    std::vector<std::function<void()>> nodes;
};
struct emu_event {
    double t;
    bool recorded;
};
struct emu_cublas {
    cudaStream_t stream;
};

namespace {

const int kGarbage = 0xff; // fresh device memory: NaN as f32 and bf16, -1 as integers

std::mutex g_mu;                      // guards the registries below
std::map<uintptr_t, size_t> g_dev;    // live cudaMalloc blocks: base -> size
std::map<uintptr_t, size_t> g_host;   // live cudaMallocHost blocks
std::set<emu_stream *> g_streams;
std::set<emu_event *> g_events;
std::set<emu_graph *> g_graphs;
std::set<emu_graph_exec *> g_execs;
int g_captures;                        // open captures (guarded by g_mu)
std::atomic<size_t> g_graph_launches;

/* Whether a capture is open; when one is, every open capture is
 * invalidated (the caller is about to fail a call that would synchronise
 * with it, as CUDA's global and thread-local capture modes do). */
bool capture_breaks() {
    std::lock_guard<std::mutex> lk(g_mu);
    if (!g_captures) return false;
    for (emu_stream *s : g_streams)
        if (s->capturing) s->invalid = true;
    return true;
}

/* s is being captured: the call records into it instead of running. */
bool capturing(cudaStream_t s) {
    std::lock_guard<std::mutex> lk(g_mu);
    return s && g_streams.count(s) && s->capturing;
}

/* Whether [p, p+n) lies inside one block of reg. */
bool in_registry(const std::map<uintptr_t, size_t> &reg, const void *p, size_t n) {
    uintptr_t a = (uintptr_t)p;
    auto it = reg.upper_bound(a);
    if (it == reg.begin()) return false;
    --it;
    return a >= it->first && n <= it->second && a - it->first <= it->second - n;
}

bool is_dev(const void *p, size_t n) {
    std::lock_guard<std::mutex> lk(g_mu);
    return in_registry(g_dev, p, n);
}

bool is_dev_or_pinned(const void *p, size_t n) {
    std::lock_guard<std::mutex> lk(g_mu);
    return in_registry(g_dev, p, n) || in_registry(g_host, p, n);
}

double now_ms() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

bool stream_ok(cudaStream_t s) {
    if (!s) return true;
    std::lock_guard<std::mutex> lk(g_mu);
    return g_streams.count(s) != 0;
}

/* Checks the device side(s) of a copy of n bytes as `k` says they are. */
cudaError_t check_copy(void *dst, const void *src, size_t n, cudaMemcpyKind k) {
    bool dd, sd;
    switch (k) {
    case cudaMemcpyHostToHost: dd = sd = false; break;
    case cudaMemcpyHostToDevice: dd = true, sd = false; break;
    case cudaMemcpyDeviceToHost: dd = false, sd = true; break;
    case cudaMemcpyDeviceToDevice: dd = sd = true; break;
    case cudaMemcpyDefault: // each side is what the registry says it is
        if (!dst || !src) return cudaErrorInvalidValue;
        if ((is_dev(dst, 1) && !is_dev(dst, n)) || (is_dev(src, 1) && !is_dev(src, n))) return cudaErrorInvalidValue;
        return cudaSuccess;
    default: return cudaErrorInvalidValue;
    }
    if (!dst || !src) return cudaErrorInvalidValue;
    if (is_dev(dst, 1) != dd || is_dev(src, 1) != sd) return cudaErrorInvalidValue; // wrong direction
    if ((dd && !is_dev(dst, n)) || (sd && !is_dev(src, n))) return cudaErrorInvalidValue; // past the end
    return cudaSuccess;
}

} // namespace

cudaError_t cudaGetDeviceCount(int *n) {
    if (!n) return set_error(cudaErrorInvalidValue);
    *n = 1;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int *d) {
    if (!d) return set_error(cudaErrorInvalidValue);
    *d = 0;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : set_error(cudaErrorInvalidDevice); }

cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b) {
    long page = sysconf(_SC_PAGESIZE), total = sysconf(_SC_PHYS_PAGES), avail = sysconf(_SC_AVPHYS_PAGES);
    if (free_b) *free_b = (size_t)avail * page;
    if (total_b) *total_b = (size_t)total * page;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d) {
    if (!p) return set_error(cudaErrorInvalidValue);
    if (d != 0) return set_error(cudaErrorInvalidDevice);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "emulated CUDA device (CPU)");
    cudaMemGetInfo(nullptr, &p->totalGlobalMem);
    p->multiProcessorCount = 132; // an H100 SXM's: code that sizes grids by SM count sees a real value
    p->major = 9;
    p->minor = 0;
    p->sharedMemPerBlockOptin = 232448;
    memcpy(p->uuid.bytes, "emulated device", 16); // one device, so one UUID for every process on it
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t n) {
    if (capture_breaks()) return set_error(cudaErrorStreamCaptureUnsupported);
    if (!p) return set_error(cudaErrorInvalidValue);
    *p = nullptr;
    if (!n) return cudaSuccess;
    void *m = nullptr; /* 256-byte aligned, as cudaMalloc promises (exact size: ASan sees the end) */
    if (posix_memalign(&m, 256, n)) return set_error(cudaErrorMemoryAllocation);
    memset(m, kGarbage, n);
    std::lock_guard<std::mutex> lk(g_mu);
    g_dev[(uintptr_t)m] = n;
    *p = m;
    return cudaSuccess;
}

cudaError_t cudaFree(void *p) {
    if (capture_breaks()) return set_error(cudaErrorStreamCaptureUnsupported);
    if (!p) return cudaSuccess;
    std::unique_lock<std::mutex> lk(g_mu);
    auto it = g_dev.find((uintptr_t)p);
    if (it == g_dev.end()) {
        lk.unlock();
        return set_error(cudaErrorInvalidDevicePointer);
    }
    g_dev.erase(it);
    lk.unlock();
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMallocHost(void **p, size_t n) {
    if (capture_breaks()) return set_error(cudaErrorStreamCaptureUnsupported);
    if (!p) return set_error(cudaErrorInvalidValue);
    *p = nullptr;
    void *m = malloc(n ? n : 1);
    if (!m) return set_error(cudaErrorMemoryAllocation);
    std::lock_guard<std::mutex> lk(g_mu);
    g_host[(uintptr_t)m] = n;
    *p = m;
    return cudaSuccess;
}

cudaError_t cudaFreeHost(void *p) {
    if (capture_breaks()) return set_error(cudaErrorStreamCaptureUnsupported);
    if (!p) return cudaSuccess;
    std::unique_lock<std::mutex> lk(g_mu);
    auto it = g_host.find((uintptr_t)p);
    if (it == g_host.end()) {
        lk.unlock();
        return set_error(cudaErrorInvalidValue);
    }
    g_host.erase(it);
    lk.unlock();
    free(p);
    return cudaSuccess;
}

namespace {
cudaError_t copy_now(void *dst, const void *src, size_t n, cudaMemcpyKind k) {
    if (!n) return cudaSuccess;
    cudaError_t e = check_copy(dst, src, n, k);
    if (e) return set_error(e);
    memmove(dst, src, n);
    return cudaSuccess;
}

/* What a call on stream s does with its work when a capture may be open:
 * 1 record it into s, 0 run it now, -1 fail (set_error done: the legacy
 * stream 0 while a capture is open, which would synchronise with it). */
int capture_route(cudaStream_t s, cudaError_t *err) {
    if (capturing(s)) return 1;
    if (!s && capture_breaks()) {
        *err = set_error(cudaErrorStreamCaptureImplicit);
        return -1;
    }
    return 0;
}
} // namespace

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind k) {
    if (capture_breaks()) return set_error(cudaErrorStreamCaptureImplicit);
    return copy_now(dst, src, n, k);
}

static size_t g_pageable_async; /* asynchronous copies with a pageable host side */

extern "C" size_t emu_pageable_async_copies(void) {
    std::lock_guard<std::mutex> lk(g_mu);
    return g_pageable_async;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind k, cudaStream_t s) {
    if (!stream_ok(s)) return set_error(cudaErrorInvalidResourceHandle);
    const void *host = k == cudaMemcpyHostToDevice ? src : k == cudaMemcpyDeviceToHost ? dst : nullptr;
    if (host && n) {
        std::lock_guard<std::mutex> lk(g_mu);
        if (!in_registry(g_host, host, n)) g_pageable_async++;
    }
    cudaError_t err = cudaSuccess;
    int route = capture_route(s, &err);
    if (route < 0) return err;
    if (route == 1) {
        cudaError_t e = n ? check_copy(dst, src, n, k) : cudaSuccess;
        if (e) {
            s->invalid = true;
            return set_error(e);
        }
        s->nodes.push_back([=]() { copy_now(dst, src, n, k); });
        return cudaSuccess;
    }
    return copy_now(dst, src, n, k);
}

namespace {
cudaError_t copy2d_now(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height,
                       cudaMemcpyKind k) {
    if (!width || !height) return cudaSuccess;
    if (width > dpitch || width > spitch) return set_error(cudaErrorInvalidValue);
    // The whole strided extent must be inside the allocation on each device side.
    cudaError_t e = check_copy(dst, src, 1, k);
    size_t dn = dpitch * (height - 1) + width, sn = spitch * (height - 1) + width;
    if (!e && (k == cudaMemcpyHostToDevice || k == cudaMemcpyDeviceToDevice) && !is_dev(dst, dn))
        e = cudaErrorInvalidValue;
    if (!e && (k == cudaMemcpyDeviceToHost || k == cudaMemcpyDeviceToDevice) && !is_dev(src, sn))
        e = cudaErrorInvalidValue;
    if (e) return set_error(e);
    for (size_t r = 0; r < height; r++) memmove((char *)dst + r * dpitch, (const char *)src + r * spitch, width);
    return cudaSuccess;
}
} // namespace

cudaError_t cudaMemcpy2D(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height,
                         cudaMemcpyKind k) {
    if (capture_breaks()) return set_error(cudaErrorStreamCaptureImplicit);
    return copy2d_now(dst, dpitch, src, spitch, width, height, k);
}

cudaError_t cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                              size_t height, cudaMemcpyKind k, cudaStream_t s) {
    if (!stream_ok(s)) return set_error(cudaErrorInvalidResourceHandle);
    cudaError_t err = cudaSuccess;
    int route = capture_route(s, &err);
    if (route < 0) return err;
    if (route == 1) { /* checked when it runs: a bad copy then fails the graph's launch */
        s->nodes.push_back([=]() { copy2d_now(dst, dpitch, src, spitch, width, height, k); });
        return cudaSuccess;
    }
    return copy2d_now(dst, dpitch, src, spitch, width, height, k);
}

namespace {
cudaError_t set_now(void *p, int v, size_t n) {
    if (!n) return cudaSuccess;
    if (!is_dev(p, n)) return set_error(cudaErrorInvalidValue);
    memset(p, v, n);
    return cudaSuccess;
}
} // namespace

cudaError_t cudaMemset(void *p, int v, size_t n) {
    if (capture_breaks()) return set_error(cudaErrorStreamCaptureImplicit);
    return set_now(p, v, n);
}

cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s) {
    if (!stream_ok(s)) return set_error(cudaErrorInvalidResourceHandle);
    cudaError_t err = cudaSuccess;
    int route = capture_route(s, &err);
    if (route < 0) return err;
    if (route == 1) {
        if (n && !is_dev(p, n)) {
            s->invalid = true;
            return set_error(cudaErrorInvalidValue);
        }
        s->nodes.push_back([=]() { set_now(p, v, n); });
        return cudaSuccess;
    }
    return set_now(p, v, n);
}

cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    if (!s || flags > 1) return set_error(cudaErrorInvalidValue);
    *s = new emu_stream{0x57e4, false, false, {}};
    std::lock_guard<std::mutex> lk(g_mu);
    g_streams.insert(*s);
    return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t s) {
    std::unique_lock<std::mutex> lk(g_mu);
    if (!s || !g_streams.erase(s)) {
        lk.unlock();
        return set_error(cudaErrorInvalidResourceHandle);
    }
    if (s->capturing) g_captures--;
    lk.unlock();
    delete s;
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    if (capture_breaks()) return set_error(cudaErrorStreamCaptureUnsupported);
    return stream_ok(s) ? cudaSuccess : set_error(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaDeviceSynchronize() {
    return capture_breaks() ? set_error(cudaErrorStreamCaptureUnsupported) : cudaSuccess;
}

cudaError_t cudaGetLastError() {
    std::lock_guard<std::mutex> lk(g_err_mu);
    cudaError_t e = g_last_error;
    g_last_error = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError() {
    std::lock_guard<std::mutex> lk(g_err_mu);
    return g_last_error;
}

const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorIllegalState: return "the operation is not permitted in the current state";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureImplicit: return "operation would make the legacy stream depend on a capturing blocking stream";
    }
    return "unrecognized error code";
}

const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureImplicit: return "cudaErrorStreamCaptureImplicit";
    }
    return "cudaErrorUnknown";
}

cudaError_t cudaEventCreate(cudaEvent_t *e) { return cudaEventCreateWithFlags(e, 0); }

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags) {
    if (!e || flags > 3) return set_error(cudaErrorInvalidValue);
    *e = new emu_event{0, false};
    std::lock_guard<std::mutex> lk(g_mu);
    g_events.insert(*e);
    return cudaSuccess;
}

namespace {
bool event_ok(cudaEvent_t e) {
    std::lock_guard<std::mutex> lk(g_mu);
    return e && g_events.count(e);
}
} // namespace

cudaError_t cudaEventDestroy(cudaEvent_t e) {
    std::unique_lock<std::mutex> lk(g_mu);
    if (!e || !g_events.erase(e)) {
        lk.unlock();
        return set_error(cudaErrorInvalidResourceHandle);
    }
    lk.unlock();
    delete e;
    return cudaSuccess;
}

static std::atomic<size_t> g_events_recorded;

extern "C" size_t emu_events_recorded(void) { return g_events_recorded.load(); }

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    if (!event_ok(e) || !stream_ok(s)) return set_error(cudaErrorInvalidResourceHandle);
    if (capturing(s)) { /* CUDA would record an event node; not emulated */
        capture_breaks();
        return set_error(cudaErrorStreamCaptureUnsupported);
    }
    if (!s && capture_breaks()) return set_error(cudaErrorStreamCaptureImplicit);
    e->t = now_ms();
    e->recorded = true;
    g_events_recorded++;
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    if (capture_breaks()) return set_error(cudaErrorStreamCaptureUnsupported);
    return event_ok(e) ? cudaSuccess : set_error(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags) {
    if (!event_ok(e) || !stream_ok(s)) return set_error(cudaErrorInvalidResourceHandle);
    return flags ? set_error(cudaErrorInvalidValue) : cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
    if (!ms) return set_error(cudaErrorInvalidValue);
    if (!event_ok(a) || !event_ok(b) || !a->recorded || !b->recorded)
        return set_error(cudaErrorInvalidResourceHandle);
    *ms = (float)(b->t - a->t);
    return cudaSuccess;
}

/* ------------------------------------------------- launches and graphs */

static std::atomic<bool> g_host_ptrs_ok{false};
extern "C" void emu_allow_host_pointers(int on) { g_host_ptrs_ok = on != 0; }

bool emu_kernel_ptr_ok(const void *p) {
    if (g_host_ptrs_ok) return true;
    std::lock_guard<std::mutex> lk(g_mu);
    return in_registry(g_dev, p, 0) || in_registry(g_host, p, 0); /* n = 0: one past the end too */
}

void emu_bad_kernel_ptr(const char *kernel, int arg, const void *p) {
    fprintf(stderr, "emu: kernel %s: argument %d (%p) is not device memory (cudaMalloc/cudaMallocHost): a host pointer\n",
            kernel, arg, p);
    abort();
}

namespace {
std::mutex g_attr_mu;
std::map<const void *, int> g_smem_optin; /* kernel -> MaxDynamicSharedMemorySize */
} // namespace

cudaError_t emu_func_set_attribute(const void *fn, cudaFuncAttribute a, int v) {
    if (!fn || a != cudaFuncAttributeMaxDynamicSharedMemorySize || v < 0 || v > 232448)
        return set_error(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> lk(g_attr_mu);
    g_smem_optin[fn] = v;
    return cudaSuccess;
}

void emu_launch(cudaStream_t s, dim3 grid, dim3 block, size_t smem, const std::function<void()> &body,
                const char *name, const char *file, const void *fn) {
    if (!stream_ok(s)) {
        set_error(cudaErrorInvalidResourceHandle);
        return;
    }
    bool rec = capturing(s);
    if (bad_config(grid, block, smem)) {
        if (rec) s->invalid = true;
        set_error(cudaErrorInvalidConfiguration);
        return;
    }
    if (smem > 49152) { /* past the default 48 KiB only with the kernel's opt-in */
        std::unique_lock<std::mutex> lk(g_attr_mu);
        auto it = g_smem_optin.find(fn);
        bool ok = it != g_smem_optin.end() && (size_t)it->second >= smem;
        lk.unlock();
        if (!ok) {
            if (rec) s->invalid = true;
            set_error(cudaErrorInvalidValue);
            return;
        }
    }
    if (rec) {
        std::function<void()> b = body; /* the kernel's arguments as they are now */
        s->nodes.push_back([=]() { run_launch(grid, block, smem, b, name, file); });
        return;
    }
    if (!s && capture_breaks()) {
        set_error(cudaErrorStreamCaptureImplicit);
        return;
    }
    run_launch(grid, block, smem, body, name, file);
}

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode) {
    if (mode != cudaStreamCaptureModeGlobal && mode != cudaStreamCaptureModeThreadLocal &&
        mode != cudaStreamCaptureModeRelaxed)
        return set_error(cudaErrorInvalidValue);
    if (!s) return set_error(cudaErrorStreamCaptureUnsupported); /* the legacy stream cannot be captured */
    std::unique_lock<std::mutex> lk(g_mu);
    if (!g_streams.count(s)) {
        lk.unlock();
        return set_error(cudaErrorInvalidResourceHandle);
    }
    if (s->capturing) {
        lk.unlock();
        return set_error(cudaErrorIllegalState);
    }
    s->capturing = true, s->invalid = false;
    s->nodes.clear();
    g_captures++;
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g) {
    if (!g) return set_error(cudaErrorInvalidValue);
    *g = nullptr;
    std::unique_lock<std::mutex> lk(g_mu);
    if (!s || !g_streams.count(s)) {
        lk.unlock();
        return set_error(cudaErrorInvalidResourceHandle);
    }
    if (!s->capturing) {
        lk.unlock();
        return set_error(cudaErrorIllegalState);
    }
    s->capturing = false;
    g_captures--;
    std::vector<std::function<void()>> nodes;
    nodes.swap(s->nodes);
    if (s->invalid) {
        lk.unlock();
        return set_error(cudaErrorStreamCaptureInvalidated);
    }
    *g = new emu_graph{std::move(nodes)};
    g_graphs.insert(*g);
    return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *status) {
    if (!status) return set_error(cudaErrorInvalidValue);
    if (!stream_ok(s)) return set_error(cudaErrorInvalidResourceHandle);
    std::lock_guard<std::mutex> lk(g_mu);
    *status = !s || !s->capturing ? cudaStreamCaptureStatusNone
              : s->invalid        ? cudaStreamCaptureStatusInvalidated
                                  : cudaStreamCaptureStatusActive;
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long flags) {
    if (!e || flags) return set_error(cudaErrorInvalidValue);
    *e = nullptr;
    std::lock_guard<std::mutex> lk(g_mu);
    if (!g || !g_graphs.count(g)) return set_error(cudaErrorInvalidResourceHandle);
    *e = new emu_graph_exec{g->nodes}; /* a copy: the graph may be destroyed or captured again */
    g_execs.insert(*e);
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s) {
    {
        std::lock_guard<std::mutex> lk(g_mu);
        if (!e || !g_execs.count(e)) return set_error(cudaErrorInvalidResourceHandle);
    }
    if (!stream_ok(s)) return set_error(cudaErrorInvalidResourceHandle);
    if (capturing(s)) { /* CUDA would add a child graph node; not emulated */
        capture_breaks();
        return set_error(cudaErrorStreamCaptureUnsupported);
    }
    if (!s && capture_breaks()) return set_error(cudaErrorStreamCaptureImplicit);
    for (const auto &node : e->nodes) node();
    g_graph_launches++;
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) {
    std::unique_lock<std::mutex> lk(g_mu);
    if (!e || !g_execs.erase(e)) {
        lk.unlock();
        return set_error(cudaErrorInvalidResourceHandle);
    }
    lk.unlock();
    delete e;
    return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t g) {
    std::unique_lock<std::mutex> lk(g_mu);
    if (!g || !g_graphs.erase(g)) {
        lk.unlock();
        return set_error(cudaErrorInvalidResourceHandle);
    }
    lk.unlock();
    delete g;
    return cudaSuccess;
}

extern "C" size_t emu_graph_launches(void) { return g_graph_launches.load(); }

/* ------------------------------------------------------------------ cuBLAS */

cublasStatus_t cublasCreate(cublasHandle_t *h) {
    if (!h) return CUBLAS_STATUS_INVALID_VALUE;
    *h = new emu_cublas{nullptr};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t h) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    h->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *workspace, size_t n) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    return !n || (workspace && is_dev(workspace, n)) ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    return m == CUBLAS_DEFAULT_MATH || m == CUBLAS_TF32_TENSOR_OP_MATH ? CUBLAS_STATUS_SUCCESS
                                                                        : CUBLAS_STATUS_INVALID_VALUE;
}

namespace {

size_t type_size(cudaDataType t) { return t == CUDA_R_16BF ? 2 : 4; }

/* A rows x cols column-major matrix with leading dimension ld must lie in
 * device memory: abort otherwise (a GPU would fault). */
void check_matrix(const char *what, const void *p, cudaDataType t, int rows, int cols, int ld) {
    size_t n = ((size_t)(cols - 1) * ld + rows) * type_size(t);
    if (!p || !is_dev_or_pinned(p, n)) {
        fprintf(stderr,
                "emu: cublasGemmEx: %s (%d x %d, ld %d, %zu bytes from %p) is not inside one device allocation\n",
                what, rows, cols, ld, n, p);
        abort();
    }
}

/* The stored rows x cols matrix as a compact float32 column-major array. */
std::vector<float> to_float(const void *p, cudaDataType t, int rows, int cols, int ld) {
    std::vector<float> v((size_t)rows * cols);
    for (int j = 0; j < cols; j++)
        for (int i = 0; i < rows; i++) {
            size_t s = (size_t)j * ld + i;
            v[(size_t)j * rows + i] =
                t == CUDA_R_16BF ? __bfloat162float(((const __nv_bfloat16 *)p)[s]) : ((const float *)p)[s];
        }
    return v;
}

} // namespace

namespace {
void gemm_now(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float al, const void *A,
              cudaDataType at, int lda, const void *B, cudaDataType bt, int ldb, float be, void *C, cudaDataType ct,
              int ldc);
} // namespace

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType at, int lda, const void *B,
                            cudaDataType bt, int ldb, const void *beta, void *C, cudaDataType ct, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t algo) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if ((ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) || (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T))
        return CUBLAS_STATUS_INVALID_VALUE;
    int ar = ta == CUBLAS_OP_N ? m : k, ac = ta == CUBLAS_OP_N ? k : m; // A as stored
    int br = tb == CUBLAS_OP_N ? k : n, bc = tb == CUBLAS_OP_N ? n : k; // B as stored
    if (m < 0 || n < 0 || k < 0 || lda < (ar > 1 ? ar : 1) || ldb < (br > 1 ? br : 1) || ldc < (m > 1 ? m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (!alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
    if (compute != CUBLAS_COMPUTE_32F || algo != CUBLAS_GEMM_DEFAULT) return CUBLAS_STATUS_NOT_SUPPORTED;
    bool f32 = at == CUDA_R_32F && bt == CUDA_R_32F && ct == CUDA_R_32F;
    bool b16 = at == CUDA_R_16BF && bt == CUDA_R_16BF && (ct == CUDA_R_16BF || ct == CUDA_R_32F);
    if (!f32 && !b16) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    float al = *(const float *)alpha, be = *(const float *)beta;
    if (capturing(h->stream)) { /* checked now and when it runs; alpha, beta as they are now */
        check_matrix("C", C, ct, m, n, ldc);
        if (k > 0) check_matrix("A", A, at, ar, ac, lda), check_matrix("B", B, bt, br, bc, ldb);
        h->stream->nodes.push_back([=]() { gemm_now(ta, tb, m, n, k, al, A, at, lda, B, bt, ldb, be, C, ct, ldc); });
        return CUBLAS_STATUS_SUCCESS;
    }
    gemm_now(ta, tb, m, n, k, al, A, at, lda, B, bt, ldb, be, C, ct, ldc);
    return CUBLAS_STATUS_SUCCESS;
}

namespace {
void gemm_now(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float al, const void *A,
              cudaDataType at, int lda, const void *B, cudaDataType bt, int ldb, float be, void *C, cudaDataType ct,
              int ldc) {
    int ar = ta == CUBLAS_OP_N ? m : k, ac = ta == CUBLAS_OP_N ? k : m; // A as stored
    int br = tb == CUBLAS_OP_N ? k : n, bc = tb == CUBLAS_OP_N ? n : k; // B as stored
    check_matrix("C", C, ct, m, n, ldc);
    if (k > 0) {
        check_matrix("A", A, at, ar, ac, lda);
        check_matrix("B", B, bt, br, bc, ldb);
    }
    // C as a compact float matrix: read only when beta != 0 (beta == 0 means
    // C may hold anything, NaN included, and is overwritten).
    std::vector<float> c((size_t)m * n, 0.0f);
    if (be != 0.0f) c = to_float(C, ct, m, n, ldc);
    if (k > 0) {
        std::vector<float> a = to_float(A, at, ar, ac, lda), b = to_float(B, bt, br, bc, ldb);
        cblas_sgemm(CblasColMajor, ta == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
                    tb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, m, n, k, al, a.data(), ar > 1 ? ar : 1,
                    b.data(), br > 1 ? br : 1, be, c.data(), m);
    } else {
        for (float &x : c) x *= be;
    }
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float x = c[(size_t)j * m + i];
            size_t s = (size_t)j * ldc + i;
            if (ct == CUDA_R_16BF)
                ((__nv_bfloat16 *)C)[s] = __float2bfloat16(x);
            else
                ((float *)C)[s] = x;
        }
}
} // namespace

const char *cublasGetStatusString(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}
