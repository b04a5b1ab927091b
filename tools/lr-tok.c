/* lr-tok: encodes JSON strings to token ids (one JSON string per input line,
 * one JSON array per output line) or, with --decode, ids back to text, with
 * the tokenizer.json of a model folder. A check and debugging tool: its
 * output is what every other tool gets from lib/model/tokenizer.c. */
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

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
            "  --list-prompts     print the preset names and exit\n"
            "  --info             print vocab_size and hash as JSON and exit\n"
            "  --help             this text\n"
            "Exit codes: 0 ok, 1 usage, 2 bad input (malformed line: message names the\n"
            "line number), 3 I/O.\n");
}

int main(int argc, char **argv) {
    lr_progname = "lr-tok";
    enum { O_DECODE = 256, O_SKIP, O_PROMPT, O_PFILE, O_LIST, O_INFO, O_HELP };
    static const struct option opts[] = {
        {"decode", no_argument, 0, O_DECODE},     {"skip-special", no_argument, 0, O_SKIP},
        {"prompt", required_argument, 0, O_PROMPT}, {"prompt-file", required_argument, 0, O_PFILE},
        {"list-prompts", no_argument, 0, O_LIST}, {"info", no_argument, 0, O_INFO},
        {"help", no_argument, 0, O_HELP},         {0, 0, 0, 0},
    };
    int decode = 0, skip = 0, info = 0, c;
    const char *preset = NULL, *pfile = NULL;
    opterr = 0; /* one line of our own instead of getopt's */
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_DECODE: decode = 1; break;
        case O_SKIP: skip = 1; break;
        case O_PROMPT: preset = optarg; break;
        case O_PFILE: pfile = optarg; break;
        case O_INFO: info = 1; break;
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
    if (preset && !prompt_preset_template(preset)) {
        int rc = prompt_render(preset, NULL, "", &(char *){0});
        return lr_fail(rc);
    }
    tok_t *t;
    int rc = tok_load(&t, argv[optind]);
    if (rc) return lr_fail(rc);
    if (info) {
        printf("{\"vocab_size\": %lld, \"hash\": \"%s\"}\n", (long long)tok_vocab_size(t), tok_hash(t));
        tok_free(t);
        return 0;
    }
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t got;
    int32_t *idbuf = NULL;
    size_t idcap = 0;
    while (rc == 0 && (got = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        json_error_t je;
        json_t *v = json_loadb(line, (size_t)got, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        if (!v) {
            rc = lr_err(LR_EINPUT, "stdin: line %zu: malformed JSON: %s", lineno, je.text);
            break;
        }
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
            if (preset || pfile) {
                if (strlen(s) != len) {
                    rc = lr_err(LR_EINPUT, "stdin: line %zu: string contains U+0000, cannot fill a prompt", lineno);
                } else if ((rc = prompt_render(preset, pfile, s, &rendered)) == 0) {
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
    free(line);
    free(idbuf);
    tok_free(t);
    if (!rc && (ferror(stdin) || fflush(stdout) || ferror(stdout)))
        rc = lr_err(LR_EIO, "%s", ferror(stdin) ? "stdin: read error" : "stdout: write error");
    return rc ? lr_fail(rc) : 0;
}
