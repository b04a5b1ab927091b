/* lr-dump: any record stream to JSON lines, and JSON lines back to a stream.
 *
 *   lr-dump [FILE]                 header, records, {"lrs_end":N} as JSON lines
 *   lr-dump --from-json [FILE]     the reverse: JSON lines -> stream on stdout
 *   lr-dump --cat -o OUT S0 S1 ... the shards of one lr-infer --shard run
 *                                  joined into the unsharded run's stream
 *                                  (lib/infer/shards.h)
 *
 * The JSON form ends with an {"lrs_end": N} line only when the whole stream
 * was read and valid, so a cut-off dump is as visibly incomplete as a cut-off
 * stream. Concatenated streams are shown as one logical stream (first header,
 * all records, total count).
 */
#include "infer/shards.h"
#include "io/jsonl.h"
#include "io/mpjson.h"
#include "io/schema.h"
#include "io/stream.h"
#include "base/opt.h"
#include "base/outfile.h"
#include "base/util.h"

#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: lr-dump [options] [FILE]\n"
            "       lr-dump --cat [-o OUT] SHARD...\n"
            "Prints a record stream (FILE or stdin) as JSON lines: the header, one line per\n"
            "record, then {\"lrs_end\": N}. Typed arrays become JSON arrays.\n"
            "\n"
            "  --head N       stop after N records (no lrs_end line)\n"
            "  --count        print only the number of records (reads and checks all)\n"
            "  --header       print only the header\n"
            "  --from-json    reverse: read JSON lines (header, records, {\"lrs_end\": N})\n"
            "                 and write a stream to stdout (or -o FILE)\n"
            "  --cat S0 S1 ...  join the outputs of one lr-infer run split with --shard K/N\n"
            "                 (all N of them, any order) into the stream the unsharded run\n"
            "                 writes: records merged by problem index, the header's shard\n"
            "                 \"0/1\"; refused (exit 2) unless their headers agree in all\n"
            "                 else and every record belongs to its shard\n"
            "  -o, --output F output file for --from-json and --cat (default stdout), written\n"
            "                 under a temporary name and renamed when complete\n"
            "  --zstd-level N compression level for --from-json and --cat, 1..19 (default 3)\n"
            "  -h, --help     this help\n"
            "Exit codes: 0 ok, 1 usage, 2 bad input, 3 I/O error.\n");
}

static int put_line(lr_buf *b) {
    lr_buf_put(b, "\n", 1);
    size_t n = fwrite(b->p, 1, b->n, stdout);
    b->n = 0;
    return n == 0 && ferror(stdout) ? lr_err(LR_EIO, "<stdout>: write error") : LR_OK;
}

static int dump(const char *path, long head, int count_only, int header_only) {
    lrs_reader *r;
    int rc = lrs_open_read(&r, path, NULL);
    if (rc) return rc;
    lr_buf b = {0};
    if (!count_only) {
        mpjson_write(&b, lrs_header_obj(r));
        rc = put_line(&b);
    }
    uint64_t n = 0;
    const msgpack_object *rec;
    while (!rc && !header_only && (head < 0 || (long)n < head)) {
        int got = lrs_next(r, &rec);
        if (got == 0) {
            if (count_only) printf("%" PRIu64 "\n", n);
            else {
                char tmp[48];
                snprintf(tmp, sizeof tmp, "{\"lrs_end\":%" PRIu64 "}", n);
                lr_buf_puts(&b, tmp);
                rc = put_line(&b);
            }
            break;
        }
        if (got != 1) { rc = got; break; }
        n++;
        if (!count_only) {
            mpjson_write(&b, rec);
            rc = put_line(&b);
        }
    }
    lr_buf_free(&b);
    lrs_close_read(r);
    if (!rc && fflush(stdout)) rc = lr_err(LR_EIO, "<stdout>: write error");
    return rc;
}

/* ---- JSON lines -> stream ---- */

static int get_str(const json_t *o, const char *k, const char **out) {
    const json_t *v = json_object_get(o, k);
    if (!json_is_string(v)) return 0;
    *out = json_string_value(v);
    return 1;
}

static int get_ident(const json_t *o, const char *k, lrs_ident *id) {
    const json_t *v = json_object_get(o, k);
    const char *name, *hash;
    if (!json_is_object(v) || !get_str(v, "name", &name) || !get_str(v, "hash", &hash) ||
        !json_is_integer(json_object_get(v, "vocab")))
        return 0;
    id->name = (char *)name;
    id->hash = (char *)hash;
    id->vocab = json_integer_value(json_object_get(v, "vocab"));
    return 1;
}

static void pack_params(msgpack_packer *pk, void *ctx) {
    const json_t *p = ctx;
    if (p) mpjson_pack(pk, p, NULL);
    else msgpack_pack_map(pk, 0);
}

static int from_json(const char *in, const char *out, int zstd_level) {
    const char *name = strcmp(in, "-") ? in : "<stdin>";
    jsonl r;
    if (strcmp(in, "-")) {
        if (jsonl_open(&r, in)) return LR_EIO;
    } else jsonl_from(&r, stdin, name);
    int rc = LR_OK, ended = 0, got;
    lrs_writer *w = NULL;
    const lr_kind *kind = NULL;
    json_t *hdr = NULL;
    uint64_t nrec = 0;
    while (!rc && (got = jsonl_line(&r)) == 0) { /* blank lines are skipped */
        const char *line = r.line;
        size_t len = r.len;
        long lineno = (long)r.lineno;
        json_error_t je;
        json_t *v = json_loadb(line, len, 0, &je);
        if (!v) { rc = lr_err(LR_EINPUT, "%s: line %ld: malformed JSON: %s", name, lineno, je.text); break; }
        if (!json_is_object(v)) {
            rc = lr_err(LR_EINPUT, "%s: line %ld: expected a JSON object", name, lineno);
        } else if (ended) {
            rc = lr_err(LR_EINPUT, "%s: line %ld: data after the {\"lrs_end\"} line", name, lineno);
        } else if (!w) {
            lrs_header h = {.zstd_level = zstd_level};
            const char *fmt;
            json_t *av = json_object_get(v, "argv");
            if (!get_str(v, "lrs", &fmt) || strcmp(fmt, LRS_FORMAT))
                rc = lr_err(LR_EINPUT, "%s: line %ld: first line must be a stream header (\"lrs\": \"%s\")", name,
                            lineno, LRS_FORMAT);
            else if (!get_str(v, "kind", (const char **)&h.kind) || !json_is_integer(json_object_get(v, "kind_version")))
                rc = lr_err(LR_EINPUT, "%s: line %ld: header field \"kind\"/\"kind_version\": missing", name, lineno);
            else if (!(kind = lr_schema_find(h.kind, (int)json_integer_value(json_object_get(v, "kind_version")))))
                rc = lr_err(LR_EINPUT, "%s: line %ld: unknown record kind \"%s\" version %lld", name, lineno, h.kind,
                            (long long)json_integer_value(json_object_get(v, "kind_version")));
            else if (!get_str(v, "tool", (const char **)&h.tool) ||
                     !get_str(v, "tool_version", (const char **)&h.tool_version) || !json_is_array(av) ||
                     !get_ident(v, "model", &h.model) || !get_ident(v, "tokenizer", &h.tokenizer))
                rc = lr_err(LR_EINPUT, "%s: line %ld: header needs tool, tool_version, argv, model, tokenizer", name,
                            lineno);
            else {
                h.kind_version = kind->version;
                h.argc = (int)json_array_size(av);
                h.argv = xcalloc(h.argc + 1, sizeof *h.argv);
                for (int i = 0; i < h.argc && !rc; i++)
                    if (!json_is_string(json_array_get(av, i)))
                        rc = lr_err(LR_EINPUT, "%s: line %ld: header field \"argv\": expected strings", name, lineno);
                    else
                        h.argv[i] = (char *)json_string_value(json_array_get(av, i));
                json_t *params = json_object_get(v, "params");
                if (!rc && params && !json_is_object(params))
                    rc = lr_err(LR_EINPUT, "%s: line %ld: header field \"params\": expected object", name, lineno);
                if (!rc) rc = lrs_create(&w, out, &h, pack_params, params);
                free(h.argv);
                hdr = v;
                v = NULL;
            }
        } else if (json_object_get(v, "lrs_end")) {
            json_t *e = json_object_get(v, "lrs_end");
            if (!json_is_integer(e) || (uint64_t)json_integer_value(e) != nrec)
                rc = lr_err(LR_EINPUT, "%s: line %ld: lrs_end says %lld records, %llu were given", name, lineno,
                            (long long)json_integer_value(e), (unsigned long long)nrec);
            ended = 1;
        } else if (json_object_get(v, "lrs")) {
            rc = lr_err(LR_EINPUT, "%s: line %ld: a second header; convert segments separately and cat them", name,
                        lineno);
        } else {
            /* Pack, then check the record against the kind's schema exactly as
             * a reader will, so no invalid stream is ever written. */
            msgpack_sbuffer sb;
            msgpack_sbuffer_init(&sb);
            msgpack_packer pk;
            msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
            rc = mpjson_pack(&pk, v, kind);
            if (rc) lr_err_prefix(rc, "%s: line %ld", name, lineno);
            else {
                msgpack_unpacked u;
                msgpack_unpacked_init(&u);
                msgpack_unpack_next(&u, sb.data, sb.size, NULL);
                char msg[512];
                if (!lr_schema_check(kind, &u.data, msg, sizeof msg))
                    rc = lr_err(LR_EINPUT, "%s: line %ld: %s", name, lineno, msg);
                msgpack_unpacked_destroy(&u);
            }
            if (!rc) {
                msgpack_sbuffer_write(lrs_pk(w)->data, sb.data, sb.size);
                rc = lrs_record_done(w);
                nrec++;
            }
            msgpack_sbuffer_destroy(&sb);
        }
        json_decref(v);
    }
    if (!rc && got > 0) rc = got; /* a read error (jsonl_line named the file) */
    if (!rc && !w) rc = lr_err(LR_EINPUT, "%s: empty input (no header line)", name);
    if (!rc && !ended) rc = lr_err(LR_EINPUT, "%s: no {\"lrs_end\": N} line: input incomplete", name);
    jsonl_close(&r);
    if (w) {
        if (rc) lrs_abort(w);
        else rc = lrs_close(w);
    }
    json_decref(hdr);
    return rc;
}

int main(int argc, char **argv) {
    lr_progname = "lr-dump";
    static const struct option opts[] = {
        {"head", required_argument, 0, 'n'}, {"count", no_argument, 0, 'c'},
        {"header", no_argument, 0, 'H'},     {"from-json", no_argument, 0, 'j'},
        {"output", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'},
        {"zstd-level", required_argument, 0, 'Z'}, {"cat", no_argument, 0, 'C'},
        {0, 0, 0, 0},
    };
    long head = -1;
    int count = 0, header = 0, fromjson = 0, cat = 0, c, zstd_level = LRS_ZSTD_DEFAULT;
    const char *out = "-";
    opterr = 0; /* one line of our own instead of getopt's */
    while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
        switch (c) {
        case 'n':
            if (opt_long("--head", optarg, 0, LONG_MAX, &head)) return lr_fail(LR_EUSAGE);
            break;
        case 'c': count = 1; break;
        case 'H': header = 1; break;
        case 'j': fromjson = 1; break;
        case 'C': cat = 1; break;
        case 'o': out = optarg; break;
        case 'Z':
            if (opt_int("--zstd-level", optarg, LRS_ZSTD_MIN, LRS_ZSTD_MAX, &zstd_level)) return lr_fail(LR_EUSAGE);
            break;
        case 'h': usage(stdout); return 0;
        default: lr_die(LR_EUSAGE, "%s: unknown option or missing value (see --help)", argv[optind - 1]);
        }
    }
    if (cat) {
        if (fromjson || count || header || head >= 0) lr_die(LR_EUSAGE, "--cat goes with -o and --zstd-level only");
        if (optind == argc) lr_die(LR_EUSAGE, "--cat: expected the shard streams (see --help)");
        const char *const *ins = (const char *const *)argv + optind;
        if (out_check_inputs(out, ins, argc - optind)) return lr_fail(LR_EUSAGE);
        int rc = shards_join(out, ins, argc - optind, zstd_level, argc, argv);
        return rc ? lr_fail(rc) : 0;
    }
    if (argc - optind > 1) {
        lr_die(LR_EUSAGE, "expected at most one input (FILE) (see --help)");
    }
    const char *in = optind < argc ? argv[optind] : "-";
    if (strcmp(out, "-") && !fromjson) lr_die(LR_EUSAGE, "-o is for --from-json and --cat (the JSON goes to stdout)");
    if (out_check_inputs(out, &in, 1)) return lr_fail(LR_EUSAGE);
    int rc = fromjson ? from_json(in, out, zstd_level) : dump(in, head, count, header);
    return rc ? lr_fail(rc) : 0;
}
