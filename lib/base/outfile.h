/* outfile: outputs that no reader ever sees half-written and that a failed
 * or interrupted tool removes (zstd's fileio: partial outputs deleted).
 *
 * A file output is written under "PATH.part-PID" in PATH's folder and
 * renamed onto PATH by out_commit, so PATH holds either the old complete
 * file or the new complete file. A folder output (a model, an adapter) is
 * filled under "PATH.part-PID/" and renamed likewise; an existing folder
 * PATH is refused unless OUT_FORCE, and then replaced only once the new one
 * is complete.
 *
 * Until committed, every output is registered: out_abort, exit() without a
 * commit, and SIGINT/SIGTERM/SIGHUP remove it (the handler, installed by
 * the first out_open*, removes every registered output and exits 130,
 * LR_EINTR). OUT_KEEP outputs are resumable instead: their temporary name
 * is the fixed "PATH.part", kept on interrupt and error so a rerun can
 * continue it, and renamed onto PATH on commit.
 *
 * "-" means stdout for out_open: nothing is renamed; *fp is stdout. */
#ifndef LR_OUTFILE_H
#define LR_OUTFILE_H

#include <stdio.h>

enum {
    OUT_FORCE = 1, /* folders: replace an existing PATH */
    OUT_KEEP = 2,  /* resumable: "PATH.part", kept when not committed */
    OUT_APPEND = 4 /* with OUT_KEEP: open an existing PATH.part for appending ("ab") */
};

typedef struct lr_out lr_out;

/* Opens a file output ("wb", or "ab" with OUT_APPEND). Returns 0 or LR_EIO. */
int out_open(lr_out **o, const char *path, int flags, FILE **fp);
/* Creates the temporary folder of a folder output; *tmpdir is where to
 * write (valid until commit/abort). Returns 0, LR_EUSAGE (PATH exists, no
 * OUT_FORCE; or PATH is a file) or LR_EIO. */
int out_open_dir(lr_out **o, const char *path, int flags, const char **tmpdir);
/* The temporary path being written. */
const char *out_tmp(const lr_out *o);
/* Files: flush, fsync and close (a full disk is reported here), then
 * rename onto PATH. Folders: rename (after removing the old PATH with
 * OUT_FORCE). On failure the temporary is removed (kept with OUT_KEEP) and
 * LR_EIO returned. *o is freed and set to NULL either way. */
int out_commit(lr_out **o);
/* Closes and removes the temporary (kept with OUT_KEEP); frees *o. NULL ok. */
void out_abort(lr_out **o);

/* Refuses an output that would destroy one of its inputs: out names the
 * same file as an input (device and inode), or, for a folder output, an
 * input lies inside it or it is the input folder. Inputs that do not exist
 * and "-" are skipped. Returns 0 or LR_EUSAGE with
 *   "OUT: is also an input (IN): choose another output". */
int out_check_inputs(const char *out, const char *const *inputs, int n);

/* Installs the SIGINT/SIGTERM/SIGHUP handler now (out_open* does it too),
 * for tools whose outputs are only stdout but which must still exit 130. */
void out_signals(void);

#endif
