/* launchlog_check: cuda/launchlog.cu's record written without a card, for
 * tests/cli/cuda_resources.sh. Notes three launches of two made-up kernels
 * (host functions standing in for kernels: the runtime refuses to describe
 * them, as it refuses everything where no driver is) and exits, so that
 * with LR_GPU_LAUNCH_DIR set the exit handler writes its card.* file: the
 * counts and largest launches as noted, -1 for what the runtime did not
 * answer. */
#include "launchlog.h"

static void k_one() {}
static void k_two() {}

int main() {
    lr_launch_note("k_one", "cuda/ops.cu", reinterpret_cast<const void *>(&k_one), dim3(128), 0);
    lr_launch_note("k_one", "cuda/ops.cu", reinterpret_cast<const void *>(&k_one), dim3(64, 2, 2), 1024);
    lr_launch_note("k_two<true>", "cuda/attention.cu", reinterpret_cast<const void *>(&k_two), dim3(32), 0);
    return 0;
}
