/* follow: see follow.h. */
#include "infer/follow.h"

#include "base/util.h"

#include <stdio.h>
#include <string.h>

int inf_follow_tokenizer(lrs_reader *fr, const lrs_header *h, const tok_sig *ours, int64_t *ndiffer) {
    const lrs_header *fh = lrs_header_of(fr);
    *ndiffer = 0;
    if (!strcmp(fh->tokenizer.hash, h->tokenizer.hash) && fh->tokenizer.vocab == h->tokenizer.vocab) return 0;
    const msgpack_object *fs = fh->params ? lrs_get(fh->params, "tokenizer_compat") : NULL;
    tok_sig theirs;
    tok_compat_res r;
    if (!fs)
        return lr_err(LR_EINPUT, "%s: tokenizers differ: the followed stream was made with tokenizer %s (%s, %lld ids), "
                      "this model's is %s (%s, %lld ids), and its header has no tokenizer_compat to compare them by",
                      lrs_path(fr), fh->tokenizer.hash, fh->tokenizer.name, (long long)fh->tokenizer.vocab,
                      h->tokenizer.hash, h->tokenizer.name, (long long)h->tokenizer.vocab);
    if (tok_sig_read(fs, &theirs)) return lr_err_prefix(LR_EINPUT, "%s: header: params", lrs_path(fr));
    tok_sig_compat(&theirs, ours, &r);
    tok_sig_free(&theirs);
    char ids[160] = "";
    tok_compat_ids(&r, ids, sizeof ids);
    if (!r.compatible)
        return lr_err(LR_EINPUT, "%s: tokenizers differ: %s (the followed stream's tokenizer %s of %s, this model's %s "
                      "of %s); the two models cannot read the same ids (lr-tok --compare on the two folders names the "
                      "first id)", lrs_path(fr), r.what, fh->tokenizer.hash, fh->tokenizer.name, h->tokenizer.hash,
                      h->tokenizer.name);
    *ndiffer = r.ndiffer;
    if (r.ndiffer)
        fprintf(stderr, "%s: %s: the followed stream's tokenizer (%s) and this model's (%s) differ only in added "
                "tokens: %lld ids (%s) name different tokens in the two; this model reads the followed ids as they "
                "are, as the reference implementation does\n", lr_progname, lrs_path(fr), fh->tokenizer.name,
                h->tokenizer.name, (long long)r.ndiffer, ids);
    return 0;
}
