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
 * including a final newline). */
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

#endif
