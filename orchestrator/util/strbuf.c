// orchestrator/util/strbuf.c — a growing string (see strbuf.h).
#include "orchestrator/util/strbuf.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sb_reserve(StrBuf *b, size_t n)
{
    if (b->oom) return -1;
    if (n > (size_t)-1 / 2 - b->len) { b->oom = 1; return -1; }
    if (b->len + n + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) { b->oom = 1; return -1; }
    b->p = p;
    b->cap = cap;
    return 0;
}

int sb_add(StrBuf *b, const char *s, size_t n)
{
    if (sb_reserve(b, n) < 0) return -1;
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

int sb_puts(StrBuf *b, const char *s) { return sb_add(b, s, strlen(s)); }
int sb_putc(StrBuf *b, char c) { return sb_add(b, &c, 1); }

int sb_vprintf(StrBuf *b, const char *fmt, va_list ap)
{
    if (b->oom) return -1;
    va_list again;
    va_copy(again, ap);
    char *dst = b->p ? b->p + b->len : NULL;
    size_t room = b->p ? b->cap - b->len : 0;
    int n = vsnprintf(dst, room, fmt, ap);
    if (n < 0) { va_end(again); b->oom = 1; return -1; }
    if ((size_t)n >= room) {
        if (sb_reserve(b, (size_t)n) < 0) { va_end(again); return -1; }
        vsnprintf(b->p + b->len, b->cap - b->len, fmt, again);
    }
    va_end(again);
    b->len += (size_t)n;
    return 0;
}

int sb_printf(StrBuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = sb_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

char *sb_take(StrBuf *b)
{
    char *p = NULL;
    if (!b->oom) p = b->p ? b->p : strdup("");
    else free(b->p);
    *b = (StrBuf){0};
    return p;
}

void sb_free(StrBuf *b)
{
    free(b->p);
    *b = (StrBuf){0};
}
