/* lr-tok: encodes JSON strings to token ids (one JSON string per input line,
 * one JSON array per output line) or, with --decode, ids back to text, with
 * the tokenizer.json of a model folder. A check and debugging tool: its
 * output is what every other tool gets from lib/model/tokenizer.c. */
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "io/jsonl.h"
#include "model/prompt.h"
#include "model/tokenizer.h"
#include "base/util.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: lr-tok [options] MODEL_OR_TOKENIZER\n"
            "Reads JSON strings, one per line, on stdin and prints the token ids of each\n"
            "as a JSON array, one per line. MODEL_OR_TOKENIZER is a tokenizer.json or a\n"
            "folder holding one. Special tokens such as <|im_end|> in the text are\n"
            "recognised. No BOS/EOS is added.\n"
            "  --decode           read JSON arrays of ids, print JSON strings\n"
            "  --skip-special     with --decode: drop special tokens\n"
            "  --prompt PRESET    wrap each string in a prompt preset first\n"
            "  --prompt-file F    wrap each string in the template of file F ({question}\n"
            "                     is the string, {{ and }} are literal braces)\n"
            "  --chat             wrap each string in the folder's own chat template (as the\n"
            "                     user turn, system \"Please reason step by step.\", generation\n"
            "                     prompt appended), as lr-infer does without --preset\n"
            "  --system TEXT      with --chat: this system turn instead\n"
            "  --list-prompts     print the preset names and exit\n"
            "  --info             print vocab_size, hash, the regular vocabulary's size and\n"
            "                     hash (base) and the added tokens' count as JSON and exit\n"
            "  --compare OTHER    compare with the tokenizer OTHER and print the verdict as\n"
            "                     JSON: compatible (same regular vocabulary and merges), the\n"
            "                     count and first ids of differing added tokens, or the first\n"
            "                     id that differs; exit 0 when compatible, 2 when not\n"
            "  --help             this text\n"
            "Exit codes: 0 ok, 1 usage, 2 bad input (malformed line: message names the\n"
            "line number), 3 I/O.\n");
}

int main(int argc, char **argv) {
    lr_progname = "lr-tok";
    enum { O_DECODE = 256, O_SKIP, O_PROMPT, O_PFILE, O_LIST, O_INFO, O_HELP, O_CHAT, O_SYSTEM, O_COMPARE };
    static const struct option opts[] = {
        {"decode", no_argument, 0, O_DECODE},     {"skip-special", no_argument, 0, O_SKIP},
        {"prompt", required_argument, 0, O_PROMPT}, {"prompt-file", required_argument, 0, O_PFILE},
        {"list-prompts", no_argument, 0, O_LIST}, {"info", no_argument, 0, O_INFO},
        {"help", no_argument, 0, O_HELP},         {"chat", no_argument, 0, O_CHAT},
        {"system", required_argument, 0, O_SYSTEM}, {"compare", required_argument, 0, O_COMPARE},
        {0, 0, 0, 0},
    };
    int decode = 0, skip = 0, info = 0, chat = 0, c;
    const char *preset = NULL, *pfile = NULL, *system = NULL, *other = NULL;
    opterr = 0; /* one line of our own instead of getopt's */
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_DECODE: decode = 1; break;
        case O_SKIP: skip = 1; break;
        case O_PROMPT: preset = optarg; break;
        case O_PFILE: pfile = optarg; break;
        case O_INFO: info = 1; break;
        case O_CHAT: chat = 1; break;
        case O_SYSTEM: system = optarg; break;
        case O_COMPARE: other = optarg; break;
        case O_LIST:
            for (const char *const *p = prompt_presets(); *p; p++) printf("%s\n", *p);
            return 0;
        case O_HELP: usage(stdout); return 0;
        default: lr_die(LR_EUSAGE, "%s: unknown option or missing value (see --help)", argv[optind - 1]);
        }
    }
    if (optind != argc - 1) lr_die(LR_EUSAGE, "expected one MODEL_OR_TOKENIZER (see --help)");
    if (decode && (preset || pfile)) lr_die(LR_EUSAGE, "--prompt/--prompt-file apply to encoding, not --decode");
    if (skip && !decode) lr_die(LR_EUSAGE, "--skip-special applies to --decode");
    if (preset && pfile) lr_die(LR_EUSAGE, "give --prompt or --prompt-file, not both");
    if (chat && (preset || pfile || decode)) lr_die(LR_EUSAGE, "--chat goes with encoding, without --prompt/--prompt-file");
    if (system && !chat) lr_die(LR_EUSAGE, "--system goes with --chat");
    if (preset && !prompt_preset_template(preset)) {
        int rc = prompt_render(preset, NULL, "", &(char *){0});
        return lr_fail(rc);
    }
    tok_t *t;
    int rc = tok_load(&t, argv[optind]);
    if (rc) return lr_fail(rc);
    if (info) {
        tok_sig s;
        tok_sig_of(t, &s);
        printf("{\"vocab_size\": %lld, \"hash\": \"%s\", \"regular\": %lld, \"base\": \"%s\", \"added\": %zu}\n",
               (long long)tok_vocab_size(t), tok_hash(t), (long long)s.regular, s.base, s.nadded);
        tok_sig_free(&s);
        tok_free(t);
        return 0;
    }
    if (other) {
        tok_t *u;
        if ((rc = tok_load(&u, other))) {
            tok_free(t);
            return lr_fail(rc);
        }
        tok_compat_res r;
        tok_compat(t, u, &r);
        json_t *ids = json_array();
        for (int i = 0; i < r.nfirst; i++) json_array_append_new(ids, json_integer(r.first[i]));
        json_t *o = json_pack("{s:b, s:I, s:o, s:s}", "compatible", r.compatible, "added_ids_differ",
                              (json_int_t)r.ndiffer, "first_ids", ids, "difference", r.what);
        char *js = json_dumps(o, JSON_COMPACT);
        puts(js);
        free(js);
        json_decref(o);
        tok_free(u), tok_free(t);
        if (!r.compatible) {
            fprintf(stderr, "lr-tok: %s and %s: %s\n", argv[optind], other, r.what);
            return LR_EINPUT;
        }
        return 0;
    }
    prompt_chat *pc = NULL;
    if (chat) {
        rc = prompt_chat_load(&pc, argv[optind]);
        if (!rc && !pc) rc = lr_err(LR_EINPUT, "%s: no chat template (tokenizer_config.json or chat_template.jinja)", argv[optind]);
        if (rc) {
            tok_free(t);
            return lr_fail(rc);
        }
    }
    jsonl in; /* strings or arrays of ids, one a line, through the one JSON-lines reader */
    jsonl_from(&in, stdin, "stdin");
    int32_t *idbuf = NULL;
    size_t idcap = 0;
    json_t *v;
    while (rc == 0 && (rc = jsonl_next(&in, JSONL_ANY, &v)) == 0) {
        size_t lineno = in.lineno;
        if (decode) {
            if (!json_is_array(v)) {
                rc = lr_err(LR_EINPUT, "stdin: line %zu: expected a JSON array of ids", lineno);
            } else {
                size_t n = json_array_size(v), i;
                if (n > idcap) idbuf = xrealloc(idbuf, (idcap = n) * sizeof *idbuf);
                json_t *e;
                json_array_foreach(v, i, e) {
                    if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) > INT32_MAX) {
                        rc = lr_err(LR_EINPUT, "stdin: line %zu: element %zu: expected an id (integer 0..2^31-1)", lineno, i);
                        break;
                    }
                    idbuf[i] = (int32_t)json_integer_value(e);
                }
                if (!rc) {
                    char *text;
                    size_t len;
                    tok_decode_ex(t, idbuf, n, skip ? TOK_SKIP_SPECIAL : 0, &text, &len);
                    json_t *s = json_stringn(text, len);
                    char *js = json_dumps(s, JSON_ENCODE_ANY);
                    fputs(js, stdout);
                    fputc('\n', stdout);
                    free(js);
                    json_decref(s);
                    free(text);
                }
            }
        } else if (!json_is_string(v)) {
            rc = lr_err(LR_EINPUT, "stdin: line %zu: expected a JSON string", lineno);
        } else {
            const char *s = json_string_value(v);
            size_t len = json_string_length(v);
            char *rendered = NULL;
            if (preset || pfile || pc) {
                if (strlen(s) != len) {
                    rc = lr_err(LR_EINPUT, "stdin: line %zu: string contains U+0000, cannot fill a prompt", lineno);
                } else if ((rc = pc ? prompt_chat_render(pc, system ? system : PROMPT_CHAT_SYSTEM, s, &rendered)
                                    : prompt_render(preset, pfile, s, &rendered)) == 0) {
                    s = rendered, len = strlen(rendered);
                }
            }
            int32_t *ids;
            size_t n;
            if (!rc && (rc = tok_encode(t, s, len, &ids, &n)) != 0) lr_err_prefix(rc, "stdin: line %zu", lineno);
            if (!rc) {
                putchar('[');
                for (size_t i = 0; i < n; i++) printf(i ? ",%d" : "%d", ids[i]);
                fputs("]\n", stdout);
                free(ids);
            }
            free(rendered);
        }
        json_decref(v);
    }
    if (rc < 0) rc = 0; /* the end of the input */
    jsonl_close(&in);
    free(idbuf);
    prompt_chat_free(pc);
    tok_free(t);
    if (!rc && (fflush(stdout) || ferror(stdout))) rc = lr_err(LR_EIO, "stdout: write error");
    return rc ? lr_fail(rc) : 0;
}
