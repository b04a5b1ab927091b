# --zstd-level N on every tool that writes a stream (lr-infer, lr-kl,
# lr-contrast, lr-dump --from-json): a higher level writes fewer bytes with
# the same records, the environment plays no part, and a level outside
# 1..19 is refused with one line on stderr, exit 1 and no output file.
source "$LR_ROOT/tests/lib.sh"
B=$LR_BIN T=$LR_TMP
"$B/lr-mkmodel" "$T/exp" --seed 1 > /dev/null
"$B/lr-mkmodel" "$T/ama" --seed 2 --layers 1 > /dev/null
head -n 4 "$LR_ROOT/data/gsm8k/train.jsonl" > "$T/q.jsonl"
size() { stat -c %s "$1"; }
records() { "$B/lr-dump" "$1" | tail -n +2; } # the header's argv names the level
infer() { "$B/lr-infer" --model "$T/exp" --data "$T/q.jsonl" --layout gsm8k --max-new-tokens 16 --temperature 1 \
    --seed 3 --full "$@" 2> /dev/null; }

# lr-infer
infer --zstd-level 1 -o "$T/e1.lrs"
infer --zstd-level 19 -o "$T/e19.lrs"
infer -o "$T/e.lrs"
[ "$(size "$T/e19.lrs")" -lt "$(size "$T/e1.lrs")" ] || die "lr-infer: level 19 ($(size "$T/e19.lrs") bytes) not smaller than 1 ($(size "$T/e1.lrs"))"
cmp -s <(records "$T/e1.lrs") <(records "$T/e19.lrs") || die "lr-infer: records differ between levels"
cmp -s <(records "$T/e.lrs") <(records "$T/e19.lrs") || die "lr-infer: records differ from the default level"

# lr-dump --from-json: the default is 3 whatever the environment says
"$B/lr-dump" "$T/e.lrs" > "$T/e.json"
"$B/lr-dump" --from-json "$T/e.json" > "$T/d3.lrs"
LRS_ZSTD_LEVEL=19 "$B/lr-dump" --from-json "$T/e.json" > "$T/denv.lrs"
cmp -s "$T/d3.lrs" "$T/denv.lrs" || die "lr-dump: LRS_ZSTD_LEVEL changed the output"
"$B/lr-dump" --from-json --zstd-level 19 "$T/e.json" > "$T/d19.lrs"
"$B/lr-dump" --from-json --zstd-level 3 -o "$T/d3b.lrs" "$T/e.json"
cmp -s "$T/d3.lrs" "$T/d3b.lrs" || die "lr-dump: --zstd-level 3 is not the default"
[ "$(size "$T/d19.lrs")" -lt "$(size "$T/d3.lrs")" ] || die "lr-dump: level 19 not smaller than 3"
"$B/lr-dump" "$T/d19.lrs" | cmp -s - "$T/e.json" || die "lr-dump: level 19 changed the records"

# lr-kl (default 1) and lr-contrast (default 1)
"$B/lr-infer" --model "$T/ama" --follow "$T/e.lrs" --full -o "$T/a.lrs" 2> /dev/null
"$B/lr-kl" -q --beta 0 "$T/e.lrs" "$T/a.lrs" > "$T/k1.lrs"
LRS_ZSTD_LEVEL=19 "$B/lr-kl" -q --beta 0 "$T/e.lrs" "$T/a.lrs" > "$T/kenv.lrs"
"$B/lr-kl" -q --beta 0 --zstd-level 19 -o "$T/k19.lrs" "$T/e.lrs" "$T/a.lrs"
cmp -s <(records "$T/k1.lrs") <(records "$T/kenv.lrs") && [ "$(size "$T/k1.lrs")" = "$(size "$T/kenv.lrs")" ] ||
    die "lr-kl: LRS_ZSTD_LEVEL changed the output"
[ "$(size "$T/k19.lrs")" -lt "$(size "$T/k1.lrs")" ] || die "lr-kl: level 19 not smaller than the default"
cmp -s <(records "$T/k1.lrs") <(records "$T/k19.lrs") || die "lr-kl: records differ between levels"
"$B/lr-contrast" -q "$T/k1.lrs" > "$T/c1.lrs"
"$B/lr-contrast" -q --zstd-level 19 "$T/k1.lrs" > "$T/c19.lrs"
[ "$(size "$T/c19.lrs")" -lt "$(size "$T/c1.lrs")" ] || die "lr-contrast: level 19 not smaller than the default"
cmp -s <(records "$T/c1.lrs") <(records "$T/c19.lrs") || die "lr-contrast: records differ between levels"

# refused: out of range, not a number; nothing written
for lvl in 0 20 -3 abc 3x ""; do
    expect_fail 1 "$B/lr-infer" --model "$T/exp" --data "$T/q.jsonl" --layout gsm8k --zstd-level "$lvl" -o "$T/bad.lrs"
    [ "$(echo "$LAST_ERR" | wc -l)" = 1 ] && [[ $LAST_ERR == *zstd-level* ]] || die "lr-infer --zstd-level '$lvl': $LAST_ERR"
    expect_fail 1 "$B/lr-kl" --zstd-level "$lvl" -o "$T/bad.lrs" "$T/e.lrs" "$T/a.lrs"
    [ "$(echo "$LAST_ERR" | wc -l)" = 1 ] && [[ $LAST_ERR == *zstd-level* ]] || die "lr-kl --zstd-level '$lvl': $LAST_ERR"
    expect_fail 1 "$B/lr-contrast" --zstd-level "$lvl" -o "$T/bad.lrs" "$T/k1.lrs"
    [ "$(echo "$LAST_ERR" | wc -l)" = 1 ] && [[ $LAST_ERR == *zstd-level* ]] || die "lr-contrast --zstd-level '$lvl': $LAST_ERR"
    expect_fail 1 "$B/lr-dump" --from-json --zstd-level "$lvl" -o "$T/bad.lrs" "$T/e.json"
    [ "$(echo "$LAST_ERR" | wc -l)" = 1 ] && [[ $LAST_ERR == *zstd-level* ]] || die "lr-dump --zstd-level '$lvl': $LAST_ERR"
    [ ! -e "$T/bad.lrs" ] || die "an output was written for --zstd-level '$lvl'"
done
for t in lr-infer lr-kl lr-contrast lr-dump; do "$B/$t" --help | grep -q -- --zstd-level || die "$t --help: no --zstd-level"; done
echo "zstd levels: lr-infer 1/19 $(size "$T/e1.lrs")/$(size "$T/e19.lrs") bytes, lr-kl $(size "$T/k1.lrs")/$(size "$T/k19.lrs")"
