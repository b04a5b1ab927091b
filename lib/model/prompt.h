/* prompt: turns a question into the text a model reads, in ChatML, without
 * Jinja. A prompt is a template: `{question}` stands for the question,
 * `{{` and `}}` for literal braces (Python str.format rules); any other
 * brace is an error, so a typo cannot silently reach the model. The
 * presets are such templates, built in:
 *   lightreasoner    METHOD.md stage 1 sampling prompt (system "Please
 *                    reason step by step.", the question as the user turn,
 *                    generation prompt appended)
 *   qwen25-math-cot  METHOD.md evaluation prompt (Qwen2.5-Math toolkit)
 *   raw              the question as is
 * A template file holds such a template verbatim (every byte counts,
 * including a final newline).
 *
 * The model's own prompt (prompt_chat_*): the chat template of a model
 * folder (chat_template.jinja, else tokenizer_config.json's
 * "chat_template"), rendered as transformers' apply_chat_template renders
 * it for [system, user] messages with the generation prompt appended. It is
 * not run as Jinja: the template is recognised by its family and its
 * variable parts are read from its text (the generation prompt literal,
 * Llama's "Today Date"); the fixed parts are those of the family, checked
 * byte for byte against transformers (tests/golden/chat_templates.json).
 * Families:
 *   chatml       Qwen2.5, Qwen2.5-Math, Qwen3, plain ChatML:
 *                <|im_start|>system\n{S}<|im_end|>\n<|im_start|>user\n{Q}<|im_end|>\n{gen}
 *   deepseek-r1  DeepSeek-R1-Distill-*: {bos}{S}<｜User｜>{Q}{gen}, gen being
 *                "<｜Assistant｜>" or (current files) "<｜Assistant｜><think>\n"
 *   llama3       Llama 3 / 3.1 / 3.2 / 3.3 Instruct: {bos}<|start_header_id|>system
 *                <|end_header_id|>\n\n[Cutting Knowledge Date ... Today Date: D\n\n]
 *                {trim S}<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n
 *                {trim Q}<|eot_id|>{gen} (trim = Python's str.strip)
 * Any other template is refused (LR_EINPUT) with a message that names
 * --preset and --prompt-file, rather than rendered by guess. */
#ifndef LR_PROMPT_H
#define LR_PROMPT_H

/* Renders the question with a preset or a template file (at most one of
 * the two; both NULL means "raw"). *out is malloc'd, NUL-terminated.
 * Returns 0, LR_EUSAGE (unknown preset, both given), LR_EIO (unreadable
 * file) or LR_EINPUT (bad template), with the message set. */
int prompt_render(const char *preset, const char *template_file, const char *question, char **out);

/* Renders a template held in memory (same rules); `where` names it in
 * error messages. */
int prompt_render_template(const char *tmpl, const char *where, const char *question, char **out);

/* The preset names, NULL-terminated, and each preset's template. */
const char *const *prompt_presets(void);
const char *prompt_preset_template(const char *name);   /* NULL when unknown */

/* The system turn of METHOD.md stage 1 (the authors' sampling script). */
#define PROMPT_CHAT_SYSTEM "Please reason step by step."

typedef struct prompt_chat prompt_chat;

/* Loads the chat template of model folder dir. Returns 0 with *c set, or
 * 0 with *c NULL when the folder has no tokenizer_config.json or it has no
 * chat_template (and no chat_template.jinja); LR_EINPUT naming the file and
 * field for a file that cannot be read as JSON, a field of the wrong type,
 * or a template of no known family; LR_EIO when a present file cannot be
 * read. */
int prompt_chat_load(prompt_chat **c, const char *dir);
/* Recognises template text (bos: the bos_token, NULL when none); `where`
 * names it in messages. Same returns as prompt_chat_load. */
int prompt_chat_parse(prompt_chat **c, const char *tmpl, const char *bos, const char *where);
/* Renders [system, user = question] with the generation prompt; *out is
 * malloc'd. Returns 0 or LR_EINPUT (text that is not valid UTF-8 where
 * the family trims it). */
int prompt_chat_render(const prompt_chat *c, const char *system, const char *question, char **out);
/* "chatml", "deepseek-r1" or "llama3". */
const char *prompt_chat_family(const prompt_chat *c);
/* Llama 3.2 templates date the system turn with strftime_now (today, local
 * time, as transformers does); this fixes the date instead (tests). */
void prompt_chat_set_date(prompt_chat *c, const char *date);
void prompt_chat_free(prompt_chat *c);

#endif
