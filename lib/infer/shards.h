/* shards: joins the outputs of one lr-infer run split with --shard K/N
 * (each process takes the problems whose index is K mod N) back into the
 * stream the unsharded run writes: the records of all N shards merged by
 * their problem index `idx`, one segment, and a header whose params are
 * the shards' own with "shard" "0/1", i.e. those of the unsharded run (so
 * lr-infer -o on the joined file continues it as its own output).
 *
 * Refused, LR_EINPUT with one message naming the file (and record and
 * field where one is at fault), before or while writing, with no output
 * left under its name:
 *   - a stream without a "shard" param (not lr-infer's), or with another N
 *     than the number of files given, or a shard given twice;
 *   - headers that differ in kind, identities or any param but "shard"
 *     (shards of different runs);
 *   - a record whose idx is not K mod N, or is not after the shard's
 *     previous one (each shard is written in input order; an output that a
 *     later run continued with problems it lacked may not be, and is
 *     refused rather than reordered in memory);
 *   - an incomplete or corrupt stream (the reader's error).
 * Streaming: one record of each shard is held at a time. */
#ifndef LR_SHARDS_H
#define LR_SHARDS_H

/* Writes the join of the n streams in[] to out ("-": stdout) at zstd level
 * zstd_level (0: the default); argc/argv (the joining command) become the
 * header's argv. Returns 0, LR_EINPUT or LR_EIO, the message set. */
int shards_join(const char *out, const char *const *in, int n, int zstd_level, int argc, char **argv);

#endif
