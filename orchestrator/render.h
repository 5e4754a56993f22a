// orchestrator/render.h — the job-script template engine. Debian packages no C mustache/template
// library, so segx carries this small one. The context is a JSON object; the syntax:
//   {{name}}            the value SHELL-QUOTED by the engine ('...' with ' written as '\''), so a
//                       spec value like `x; touch /tmp/pwned` stays one inert argument
//   {{{name}}}          the value as is, for trusted pre-rendered blocks (#SBATCH lines, commands)
//   {{raw name}}        same as {{{name}}}
//   {{#name}}..{{/name}} section: rendered when name is truthy (non-empty string, non-zero number,
//                       true, non-empty array/object); an array repeats it per element, with an
//                       object element pushed as the inner context and {{.}} naming the element
//   {{^name}}..{{/name}} inverted section: rendered when name is missing or falsy
//   {{! comment }}      dropped
// Names may be dotted (`trainer.dataset`) and are looked up innermost context first. A {{name}}
// that is nowhere in the context is an error (a typo must not become an empty argument); a
// section or inverted section over a missing name is simply false. A line that holds only a
// section tag (and blanks) is dropped whole, so templates stay readable.
// defines: render_template, render_file, render_value, render_shell_quote, render_shell_is_simple.
#ifndef SEGX_RENDER_H
#define SEGX_RENDER_H
#include <jansson.h>
#include <stddef.h>

// Renders tmpl with ctx into a malloc'd string (*out). name labels errors ("job.sbatch.tmpl").
// 0, or -1 with err "NAME:LINE: what went wrong".
int render_template(const char *tmpl, const char *name, const json_t *ctx, char **out,
                    char *err, size_t errlen);
// The same for one value that is quoted later as a whole (a segx-train flag value such as
// "{{run_dir}}/trace.json"): plain {{name}} tags insert the value unquoted.
int render_value(const char *value, const char *name, const json_t *ctx, char **out, char *err, size_t errlen);
// Reads the template file path and renders it (errors name the file).
int render_file(const char *path, const json_t *ctx, char **out, char *err, size_t errlen);
// Appends s single-quoted for sh to a malloc'd string: returns the new string (frees nothing).
char *render_shell_quote(const char *s);
// 1 when cmd is one simple command that can be given to a program as argv (srun, a container
// runtime): words, quoted or not, and nothing the shell must do (no ; & | < > ( ) ` $ globs ~ #,
// no NAME=value first word, no builtin such as cd, source, export, conda). 0 otherwise.
int render_shell_is_simple(const char *cmd);
// The text form of a scalar JSON value ("" for null, "true"/"false", integers without ".0",
// reals shortest round-trip). Writes into buf; returns buf.
const char *render_scalar(const json_t *v, char *buf, size_t len);

#endif
