#!/usr/bin/env bash
# Installs the Debian packages the build and tests need when any is missing,
# so `make test` works on a fresh Debian 12 machine.
missing=0
for h in msgpack.h zstd.h jansson.h pcre2.h utf8proc.h x86_64-linux-gnu/openblas-pthread/cblas.h; do
    [ -e "/usr/include/$h" ] || missing=1
done
for c in cc make jq zstd pkg-config bc clang gnuplot; do command -v "$c" > /dev/null || missing=1; done
[ "$missing" = 0 ] && exit 0
echo "installing missing build dependencies (make deps)..." >&2
exec make -C "$(dirname "$0")/.." deps
