/* tokenizer: Hugging Face `tokenizer.json` byte-level BPE (the kind Qwen2 and
 * GPT-2 use), reproducing the `tokenizers` library's ids exactly.
 *
 * Encoding follows the library's pipeline:
 *   1. added tokens with "normalized": false are cut out of the raw text
 *      (leftmost-longest, honouring lstrip / rstrip / single_word);
 *   2. every other piece is normalised (NFC, via utf8proc) and added tokens
 *      with "normalized": true are cut out of it;
 *   3. the pre-tokenizer regexes (the Split pattern from the JSON, and the
 *      GPT-2 pattern when ByteLevel has use_regex) cut the rest into words,
 *      compiled with PCRE2 in UTF + UCP mode ("Isolated": matches and gaps
 *      are both words);
 *   4. each word's bytes map to the ByteLevel alphabet and are merged by
 *      rank (lowest rank first, leftmost on ties, as `tokenizers` does).
 * Special tokens are always recognised in text (as `tokenizers` does by
 * default; no BOS/EOS is added: the post-processor is not applied).
 *
 * Decoding maps each id to its token (added tokens first), turns each token
 * back into bytes through the ByteLevel alphabet (a token containing a
 * character outside that alphabet contributes its own UTF-8 bytes), and
 * converts the concatenation to UTF-8 the way Rust's String::from_utf8_lossy
 * does: each maximal invalid subsequence becomes one U+FFFD. Ids that name
 * no token are skipped, as in `tokenizers`.
 *
 * Supported JSON: normalizer null / NFC / Sequence of NFC; pre_tokenizer
 * Split (Regex or String pattern, behavior Isolated, invert false),
 * ByteLevel (add_prefix_space false) or a Sequence of those; model BPE
 * without dropout, byte_fallback, subword prefixes; decoder ByteLevel.
 * Anything else is refused with LR_EINPUT naming the field.
 *
 * Thread safety: a loaded tok_t is read-only except for its word cache,
 * which is guarded by a mutex, so any number of threads may call
 * tok_encode / tok_decode / tok_id on one tok_t concurrently. tok_free must
 * not race with them. */
#ifndef LR_TOKENIZER_H
#define LR_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct tok tok_t;

/* Loads `path`: a tokenizer.json file, or a directory holding one (a model
 * folder). Returns 0, or LR_EIO / LR_EINPUT with the message set. */
int tok_load(tok_t **t, const char *path_dir_or_json);
void tok_free(tok_t *t);

/* Encodes len bytes of UTF-8 text (special tokens recognised). *ids is
 * malloc'd (free() it; non-NULL even when *n is 0). Returns 0, or LR_EINPUT
 * for text that is not valid UTF-8. */
int tok_encode(const tok_t *t, const char *text, size_t len, int32_t **ids, size_t *n);

enum { TOK_SKIP_SPECIAL = 1 };
/* Decodes ids to UTF-8 text, keeping special tokens (as transformers'
 * decode does by default). *text is malloc'd and NUL-terminated. */
int tok_decode(const tok_t *t, const int32_t *ids, size_t n, char **text, size_t *len);
/* flags: TOK_SKIP_SPECIAL drops tokens marked "special" (the default of
 * the `tokenizers` Python decode). */
int tok_decode_ex(const tok_t *t, const int32_t *ids, size_t n, int flags, char **text,
                  size_t *len);

/* The id of a token given as its string in the JSON (an added token such as
 * "<|im_end|>", or a vocabulary entry in ByteLevel spelling such as "Ġthe");
 * -1 when absent. */
int32_t tok_id(const tok_t *t, const char *token_string);
/* The token string of id (NULL when id names no token). */
const char *tok_token(const tok_t *t, int32_t id);
/* The raw bytes id contributes to decoded text (before the lossy UTF-8
 * step: may be part of a multi-byte character), for incremental output and
 * stop strings; NULL with *len 0 when id names no token. */
const uint8_t *tok_token_bytes(const tok_t *t, int32_t id, size_t *len);
/* 1 when id is an added token marked "special". */
int tok_is_special(const tok_t *t, int32_t id);
/* Largest id + 1, counting added tokens (151669 for Qwen2.5). */
int64_t tok_vocab_size(const tok_t *t);
/* Hex content hash of the tokenizer.json bytes (FNV-1a 64 of the bytes,
 * then of their length: 16 hex digits). Identifies the tokenizer in stream
 * headers. */
const char *tok_hash(const tok_t *t);

/* Turns the word cache on (default) or off; for benchmarks. Not to be
 * called while other threads encode. */
void tok_set_cache(tok_t *t, int on);

/* ---- compatibility ----
 * Two tokenizers are compatible when their regular vocabularies (model.vocab:
 * id -> token string) and merges agree; their added tokens may differ. Then
 * one model can read the other's ids as they are, as the reference
 * implementation does with DeepSeek-R1-Distill-Qwen (expert) and Qwen2.5
 * (amateur): their tokenizer.json files differ only in added tokens, so an id
 * such as 151644 is <｜User｜> to one and <|im_start|> to the other.
 *
 * A signature (tok_sig) carries what the check needs, small enough for a
 * stream header: the regular vocabulary's size, a 32-bit hash of every
 * TOK_SIG_BLOCK of its ids, a hash of the merges, and the added tokens. From
 * two signatures a mismatch is named to the block (ids 512..767); from two
 * loaded tokenizers (tok_compat) to the id. */
#define TOK_SIG_BLOCK 256

typedef struct {
    int64_t regular;       /* ids 0..regular-1 come from model.vocab */
    char base[17];         /* hash of regular, blocks and merges (hex) */
    uint32_t *block;       /* [nblock] */
    size_t nblock;
    int64_t nmerges;
    char merges[17];       /* hash of the merges (hex) */
    int32_t *added_id;     /* [nadded] the added tokens: id and content */
    char **added;
    size_t nadded;
} tok_sig;

typedef struct {
    int compatible;        /* regular vocabularies and merges agree */
    int64_t ndiffer;       /* ids whose added token differs (or exists on one side only) */
    int32_t first[8];      /* the first of those ids, ascending */
    int nfirst;
    char what[320];        /* when not compatible: the first difference, in words */
} tok_compat_res;

/* The signature of t (malloc'd parts; tok_sig_free). */
void tok_sig_of(const tok_t *t, tok_sig *s);
void tok_sig_free(tok_sig *s);
/* As a msgpack map {regular, base, blocks, merges, nmerges, added: [[id, content]...]}
 * (msgpack_packer: io/stream.h's packer type). */
struct msgpack_packer;
void tok_sig_pack(struct msgpack_packer *pk, const tok_sig *s);
/* Reads a packed signature; LR_EINPUT (message names the field) when o is
 * not one. */
struct msgpack_object;
int tok_sig_read(const struct msgpack_object *o, tok_sig *s);
/* Compares two signatures (a mismatch named to the block). Returns r->compatible. */
int tok_sig_compat(const tok_sig *a, const tok_sig *b, tok_compat_res *r);
/* Compares two tokenizers (a mismatch named to the id). Returns r->compatible. */
int tok_compat(const tok_t *a, const tok_t *b, tok_compat_res *r);
/* Appends the ids of r->first (", "-separated, "..." when more) to buf. */
void tok_compat_ids(const tok_compat_res *r, char *buf, size_t n);

#endif
