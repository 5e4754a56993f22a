// orchestrator/util/strbuf.h — a growing NUL-terminated string. defines: StrBuf, sb_*.
// Contract: start from StrBuf b = {0}; every append keeps b.p NUL-terminated (b.p is NULL until
// the first append); out of memory is sticky: b.oom is set, later appends do nothing and return
// -1, and the text so far stays valid. sb_take hands the text over (never NULL unless out of
// memory) and leaves the buffer empty; sb_free releases it. No output, no global state.
#ifndef SEGX_STRBUF_H
#define SEGX_STRBUF_H
#include <stdarg.h>
#include <stddef.h>

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} StrBuf;

int sb_add(StrBuf *b, const char *s, size_t n);   // 0, or -1 when out of memory
int sb_puts(StrBuf *b, const char *s);
int sb_putc(StrBuf *b, char c);
int sb_printf(StrBuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int sb_vprintf(StrBuf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
// Makes room for n more bytes (plus the NUL): 0 or -1.
int sb_reserve(StrBuf *b, size_t n);
// The text ("" when nothing was added; "" is malloc'd too), or NULL when out of memory (the buffer
// is freed either way). The caller frees it.
char *sb_take(StrBuf *b);
void sb_free(StrBuf *b);
#endif
