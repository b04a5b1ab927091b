# The repository stands on its own: no tracked file (outside the unmodified
# data/) names a folder beside the checkout (../shared), an LR_SHARED
# variable or a development machine's home or work folders; no tracked file
# is over 5 MiB; data/ holds every benchmark with the row counts that
# data/README.md lists. (.ci/run proves the rest: the suite in a clone with
# nothing beside it.)
source "$LR_ROOT/tests/lib.sh"
cd "$LR_ROOT"
if git rev-parse --git-dir > /dev/null 2>&1; then
    git ls-files -z > "$LR_TMP/files"
else # an exported tree: everything but the build outputs
    find . -path ./build -prune -o -path ./bin -prune -o -path ./.git -prune -o -type f -printf '%P\0' > "$LR_TMP/files"
fi
[ -s "$LR_TMP/files" ] || die "no files listed"
self=tests/cli/standalone.sh
hits=$(tr '\0' '\n' < "$LR_TMP/files" | grep -v -e '^data/' -e "^$self\$" -e '^\.ci/run$' | tr '\n' '\0' |
    xargs -0 grep -I -n -E '\.\./shared|LR_SHARED|/work/|/root/|/home/[a-z]' -- 2> /dev/null || true)
[ -z "$hits" ] || die "paths outside the repository: $(echo "$hits" | head -5)"
# .ci/run names ../shared only to refuse to run beside one
grep -q '\[ ! -e \.\./shared \]' .ci/run || die ".ci/run no longer checks that nothing lies beside the clone"
big=$(tr '\0' '\n' < "$LR_TMP/files" | while read -r f; do
    [ -f "$f" ] && [ "$(stat -c %s "$f")" -gt 5242880 ] && echo "$f"; done || true)
[ -z "$big" ] || die "tracked files over 5 MiB: $big"
while read -r rows file; do
    [ -f "data/$file" ] || die "data/$file missing"
    [ "$(wc -l < "data/$file")" = "$rows" ] || die "data/$file: $(wc -l < "data/$file") rows, data/README.md says $rows"
    grep -q "^| \`$file\` | $rows |" data/README.md || die "data/README.md does not list $file with $rows rows"
done <<'ROWS'
7473 gsm8k/train.jsonl
1319 gsm8k/test.jsonl
500 math500/test.jsonl
1000 svamp/test.jsonl
2215 asdiv/test.jsonl
272 minerva_math/test.jsonl
675 olympiadbench/test.jsonl
3018 mmlu_stem/test.jsonl
ROWS
[ -f tests/fixtures/qwen/tokenizer.json.zst ] && [ -f tests/fixtures/qwen/tokenizer_config.json ] || die "tokenizer fixture missing"
