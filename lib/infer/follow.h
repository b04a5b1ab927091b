/* follow: whether this model may read a followed stream's token ids as
 * they are (lr-infer --follow).
 *
 * Refused (LR_EINPUT, one message naming both tokenizers) unless the two
 * tokenizers are compatible (tokenizer.h: the same regular vocabulary and
 * merges, compared through the followed header's params.tokenizer_compat).
 * When only added tokens differ, as with DeepSeek-R1-Distill-Qwen and
 * Qwen2.5, says so once on stderr and counts the ids that name different
 * tokens in the two, for the header. */
#ifndef LR_INFER_FOLLOW_H
#define LR_INFER_FOLLOW_H

#include "io/stream.h"
#include "model/tokenizer.h"

#include <stdint.h>

/* fr: the followed stream; h: this run's header (its tokenizer identity);
 * ours: this model's tokenizer signature. 0 (with *ndiffer) or LR_EINPUT. */
int inf_follow_tokenizer(lrs_reader *fr, const lrs_header *h, const tok_sig *ours, int64_t *ndiffer);

#endif
