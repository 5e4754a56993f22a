// orchestrator/util/jscan.c — a small JSON tokenizer with positions (see jscan.h).
#include "orchestrator/util/jscan.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// ---- strings -------------------------------------------------------------------------------

// One escape after the backslash at p: its length past the backslash, or 0 when malformed.
static int escape_len(const unsigned char *p, const unsigned char *end)
{
    if (end - p < 2) return 0;
    if (p[1] && strchr("\"\\/bfnrt", p[1])) return 1;
    if (p[1] != 'u' || end - p < 6) return 0;
    for (int k = 2; k < 6; k++)
        if (!((p[k] >= '0' && p[k] <= '9') || (p[k] >= 'a' && p[k] <= 'f') || (p[k] >= 'A' && p[k] <= 'F')))
            return 0;
    return 5;
}

// The bytes of one multi-byte UTF-8 character at p (lead byte >= 0x80), or -1 when invalid.
static int utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned char ch = *p;
    int n = ch >= 0xC2 && ch <= 0xDF ? 1 : ch >= 0xE0 && ch <= 0xEF ? 2 : ch >= 0xF0 && ch <= 0xF4 ? 3 : -1;
    if (n < 0 || end - p <= n) return -1;
    for (int k = 1; k <= n; k++)
        if ((p[k] & 0xC0) != 0x80) return -1;
    if ((ch == 0xE0 && p[1] < 0xA0) || (ch == 0xED && p[1] >= 0xA0) || (ch == 0xF0 && p[1] < 0x90) ||
        (ch == 0xF4 && p[1] >= 0x90))
        return -1;  // overlong, surrogate, beyond U+10FFFF
    return n + 1;
}

// The escape (after a backslash) or the byte that is not plain ASCII at p: its length, or
// JSCAN_BAD / JSCAN_DEFER. Not inlined: jscan_string's loop stays small (keys are short).
__attribute__((noinline)) static int special_len(int fast, const unsigned char *p, const unsigned char *end)
{
    if (*p == '\\') {
        if (fast) return JSCAN_DEFER;
        int n = escape_len(p, end);
        return n ? n + 1 : JSCAN_BAD;
    }
    if (*p < 0x20) return JSCAN_BAD;
    int n = utf8_len(p, end);
    return n < 0 ? JSCAN_BAD : n;
}

int jscan_string(JScan *s)
{
    const unsigned char *p = (const unsigned char *)s->p + 1, *end = (const unsigned char *)s->end;
    while (p < end) {
        unsigned char ch = *p;
        if (ch == '"') { s->p = (const char *)p + 1; return JSCAN_OK; }
        if (ch >= 0x20 && ch < 0x80 && ch != '\\') { p++; continue; }
        int n = special_len(s->fast, p, end);
        if (n < 0) return n;
        p += n;
    }
    return JSCAN_BAD;
}

// ---- numbers -------------------------------------------------------------------------------

static int is_digit(const char *p, const char *end) { return p < end && *p >= '0' && *p <= '9'; }

// The digits of a number as it is scanned: Clinger's fast path needs the decimal's digits to fit in
// 53 bits (at most 15 significant ones) and a power of ten up to 1e22; then the value is one
// correctly rounded IEEE multiply or divide, equal to strtod's.
typedef struct {
    uint64_t m;     // the digits as an integer (while exact)
    int sig, exp10; // significant digits seen; the power of ten that m is scaled by
    int exact;      // 0: too many digits, or an exponent too large for the fast path
} Digits;

static void add_digit(Digits *d, char ch)
{
    if (d->m || ch != '0') d->sig++;
    if (d->sig > 15) d->exact = 0;
    else d->m = d->m * 10 + (uint64_t)(ch - '0');
}

// The value of the valid number [p, q) (integral: no fraction or exponent), or JSCAN_DEFER.
static int number_value(const char *p, const char *q, int integral, const Digits *d, double *v)
{
    static const double pow10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                                   1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    size_t n = (size_t)(q - p);
    if (n >= 64 || (integral && n > 18)) return JSCAN_DEFER;  // jansson's integer range rules
    if (d->exact && d->exp10 <= 22 && d->exp10 >= -22) {
        double x = (double)d->m;
        x = d->exp10 >= 0 ? x * pow10[d->exp10] : x / pow10[-d->exp10];
        *v = *p == '-' ? -x : x;
        return JSCAN_OK;
    }
    char buf[64];
    memcpy(buf, p, n);
    buf[n] = 0;
    *v = strtod(buf, NULL);
    return isinf(*v) ? JSCAN_DEFER : JSCAN_OK;
}

// The exponent's digits at q (a valid exponent follows 'e'/'E' and its sign); into d. The end.
static const char *exponent(const char *q, const char *end, int neg, Digits *d)
{
    int e = 0;
    for (; is_digit(q, end); q++)
        if (e <= 400) e = e * 10 + (*q - '0');
    if (e > 400) d->exact = 0;
    d->exp10 += neg ? -e : e;
    return q;
}

// Checks the number's form and gathers its digits in the same pass.
int jscan_number(JScan *s, double *v)
{
    const char *q = s->p, *end = s->end;
    int integral = 1;
    Digits d = {0, 0, 0, 1};
    if (q < end && *q == '-') q++;
    if (!is_digit(q, end)) return JSCAN_BAD;
    if (*q == '0') q++;
    else for (; is_digit(q, end); q++) add_digit(&d, *q);
    if (q < end && *q == '.') {
        integral = 0;
        q++;
        if (!is_digit(q, end)) return JSCAN_BAD;
        for (; is_digit(q, end); q++, d.exp10--) add_digit(&d, *q);
    }
    if (q < end && (*q == 'e' || *q == 'E')) {
        integral = 0;
        q++;
        int neg = q < end && *q == '-';
        if (q < end && (*q == '+' || *q == '-')) q++;
        if (!is_digit(q, end)) return JSCAN_BAD;
        q = exponent(q, end, neg, &d);
    }
    if (s->fast) {
        double x;
        int rc = number_value(s->p, q, integral, &d, &x);
        if (rc != JSCAN_OK) return rc;
        if (v) *v = x;
    }
    s->p = q;
    return JSCAN_OK;
}

// ---- values --------------------------------------------------------------------------------

static int value_at(JScan *s, int depth, char *type, double *num);

// '[' or '{' at s->p, depth deep: checks and skips the container.
static int container(JScan *s, int depth)
{
    if (depth > s->max_depth) return JSCAN_DEFER;
    char close = *s->p == '[' ? ']' : '}';
    int object = close == '}';
    s->p++;
    jscan_ws(s);
    if (jscan_at(s, close)) { s->p++; return JSCAN_OK; }
    for (;;) {
        char t;
        int rc;
        if (object) {
            if (!jscan_at(s, '"')) return JSCAN_BAD;
            if ((rc = jscan_string(s)) != JSCAN_OK) return rc;
            jscan_ws(s);
            if (!jscan_at(s, ':')) return JSCAN_BAD;
            s->p++;
            jscan_ws(s);
        }
        if ((rc = value_at(s, depth + 1, &t, NULL)) != JSCAN_OK) return rc;
        jscan_ws(s);
        if (jscan_at(s, ',')) { s->p++; jscan_ws(s); continue; }
        if (jscan_at(s, close)) { s->p++; return JSCAN_OK; }
        return JSCAN_BAD;
    }
}

static int literal(JScan *s, const char *lit, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0) return JSCAN_BAD;
    s->p += n;
    return JSCAN_OK;
}

static int value_at(JScan *s, int depth, char *type, double *num)
{
    if (s->p >= s->end) return JSCAN_BAD;
    switch (*s->p) {
    case '"': *type = 's'; return jscan_string(s);
    case '[': *type = 'a'; return container(s, depth);
    case '{': *type = 'o'; return container(s, depth);
    case 't': *type = 'b'; return literal(s, "true", 4);
    case 'f': *type = 'b'; return literal(s, "false", 5);
    case 'n': *type = 'z'; return literal(s, "null", 4);
    default:  *type = 'n'; return jscan_number(s, num);
    }
}

int jscan_value(JScan *s, char *type, double *num) { return value_at(s, 1, type, num); }

// ---- positions -----------------------------------------------------------------------------

void jscan_line_col(const char *text, const char *at, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (const char *p = text; p < at; p++) {
        if (*p == '\n') { (*line)++; *col = 1; }
        else (*col)++;
    }
}
