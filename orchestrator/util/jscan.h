// orchestrator/util/jscan.h — a small JSON tokenizer over a byte range that keeps positions
// (jansson keeps none for the values it decodes). defines: JScan, JSCAN_OK/BAD/DEFER,
// JSCAN_DEEPEST, jscan_ws, jscan_at, jscan_string, jscan_number, jscan_value, jscan_line_col.
// Users: spec.c finds where a key path sits in a spec (FILE:LINE:COL in its messages); collect.c
// reads metrics.jsonl lines in place and leaves to jansson what it does not read as jansson would.
// Contract:
// - A scanner reads [p, end) only: no NUL terminator is needed (a NUL byte is just invalid JSON).
// - Each call reads one token starting exactly at s->p (no whitespace is skipped first) and, on
//   JSCAN_OK, leaves s->p just past it. On another result s->p is unspecified: give up the text.
// - JSCAN_BAD: the text is not JSON (RFC 8259): bad grammar, a control byte in a string, bad UTF-8
//   (overlong forms, surrogates, beyond U+10FFFF, cut sequences), a number like "-", "1." or "1e".
//   A token ends where its grammar does: "01" is the number 0 with "1" after it.
// - JSCAN_DEFER: maybe valid, but for a full parser: a container nested deeper than max_depth, and
//   with fast set, a backslash escape, a number of 64 characters or more, an integer (no '.' or
//   exponent) of more than 18 characters (jansson reads those as integers and may refuse them) and a
//   number whose value overflows to infinity.
// - Numbers read with fast set are bit-identical to strtod's (Clinger's fast path, else strtod).
// - No allocation, no output, no global state; recursion is bounded by max_depth.
#ifndef SEGX_JSCAN_H
#define SEGX_JSCAN_H
#include <stddef.h>

enum { JSCAN_OK = 0, JSCAN_BAD = -1, JSCAN_DEFER = -2 };

// jansson's own nesting limit (JSON_PARSER_MAX_DEPTH): with it, all text jansson accepts scans.
#define JSCAN_DEEPEST 2048

typedef struct {
    const char *p, *end;  // the next byte; the end of the text
    int max_depth;        // containers nested deeper than this in one jscan_value: JSCAN_DEFER
    int fast;             // 1: read numbers, defer escapes and what jansson would read otherwise
} JScan;

// Skips JSON whitespace (space, tab, CR, LF).
static inline void jscan_ws(JScan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\r' || *s->p == '\n')) s->p++;
}

// 1 when the next byte is c.
static inline int jscan_at(const JScan *s, char c) { return s->p < s->end && *s->p == c; }

// A string at s->p (which must be '"'); the body is [start + 1, s->p - 1) on JSCAN_OK. Without
// fast, escapes are checked for form (\" \\ \/ \b \f \n \r \t, \u and four hex digits; surrogate
// pairing is not checked) and skipped.
int jscan_string(JScan *s);

// A number at s->p. With fast, its value goes to *v (v may be NULL); without, only its form is
// checked and *v is left alone.
int jscan_number(JScan *s, double *v);

// One value of any kind at s->p; *type is 's' string, 'n' number, 'z' null, 'b' true or false,
// 'a' array, 'o' object (set before the value is checked). Containers are checked whole; a value
// that is a container is at depth 1. *num as jscan_number's *v (num may be NULL).
int jscan_value(JScan *s, char *type, double *num);

// 1-based line and column (in bytes) of at in text; at must lie in [text, end of text].
void jscan_line_col(const char *text, const char *at, int *line, int *col);
#endif
