# The library's layering (README's module map, tests/layers/check.py): the
# tree passes, and copies of it with an upward include, a same-rank sibling
# include, a bare include and a two-module cycle each fail, naming the file.
source "$LR_ROOT/tests/lib.sh"
C=$LR_ROOT/tests/layers/check.py
python3 "$C" "$LR_ROOT" || die "the tree breaks its own layering"
broken() { # name, file, line to add: a copy of lib/ with that include must fail
    local d=$LR_TMP/$1
    mkdir -p "$d" && cp -r "$LR_ROOT/lib" "$d/"
    printf '%s\n' "$3" >> "$d/$2"
    set +e; out=$(python3 "$C" "$d"); rc=$?; set -e
    [ "$rc" = 1 ] || die "$1: accepted ($rc)"
    grep -q "${2%.c}" <<< "$out" || die "$1: the message does not name $2: $out"
}
broken upward lib/base/util.c '#include "io/stream.h"'
broken sibling lib/eval/answer.c '#include "nn/forward.h"'
broken bare lib/io/stream.c '#include "util.h"'
broken cycle lib/eval/mathexpr.c '#include "eval/mathequal.h"'
broken missing lib/io/stream.c '#include "io/nosuch.h"'
echo ok
