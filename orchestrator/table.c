// orchestrator/table.c — aligned / csv / json / markdown output (see table.h).
#include "orchestrator/table.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef enum { CELL_NULL, CELL_INT, CELL_REAL, CELL_TEXT } CellType;
typedef struct {
    CellType type;
    int64_t i;
    double r;
    char *s;
} Cell;

struct Table {
    size_t ncols;
    char **headers;
    int *decimals;      // per column, human formats
    Cell *cells;        // rows * ncols, row major
    size_t nrows, cap;  // cap in rows
    size_t filled;      // cells filled in the last row
};

int table_format_parse(const char *name, TableFormat *out)
{
    static const struct { const char *name; TableFormat f; } names[] = {
        {"auto", TABLE_AUTO}, {"table", TABLE_TEXT}, {"csv", TABLE_CSV}, {"json", TABLE_JSON},
        {"markdown", TABLE_MARKDOWN}, {"md", TABLE_MARKDOWN},
    };
    for (size_t i = 0; name && i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i].name) == 0) { *out = names[i].f; return 0; }
    return -1;
}

TableFormat table_format_resolve(TableFormat f, FILE *out)
{
    (void)out;
    return f == TABLE_AUTO ? TABLE_TEXT : f;
}

Table *table_new(size_t ncols, const char *const *headers)
{
    Table *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->ncols = ncols;
    t->headers = calloc(ncols ? ncols : 1, sizeof *t->headers);
    t->decimals = calloc(ncols ? ncols : 1, sizeof *t->decimals);
    if (!t->headers || !t->decimals) { table_free(t); return NULL; }
    for (size_t c = 0; c < ncols; c++) {
        t->headers[c] = strdup(headers[c] ? headers[c] : "");
        t->decimals[c] = 4;
        if (!t->headers[c]) { table_free(t); return NULL; }
    }
    return t;
}

void table_free(Table *t)
{
    if (!t) return;
    for (size_t k = 0; k < t->nrows * t->ncols; k++)
        if (t->cells[k].type == CELL_TEXT) free(t->cells[k].s);
    for (size_t c = 0; t->headers && c < t->ncols; c++) free(t->headers[c]);
    free(t->headers);
    free(t->decimals);
    free(t->cells);
    free(t);
}

void table_set_decimals(Table *t, size_t col, int decimals)
{
    if (col < t->ncols) t->decimals[col] = decimals;
}

size_t table_nrows(const Table *t) { return t->nrows; }

int table_row(Table *t)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16;
        Cell *c = realloc(t->cells, cap * (t->ncols ? t->ncols : 1) * sizeof *c);
        if (!c) return -1;
        t->cells = c;
        t->cap = cap;
    }
    memset(&t->cells[t->nrows * t->ncols], 0, t->ncols * sizeof(Cell));
    t->nrows++;
    t->filled = 0;
    return 0;
}

static Cell *next_cell(Table *t)
{
    if (t->nrows == 0 || t->filled >= t->ncols) return NULL;
    return &t->cells[(t->nrows - 1) * t->ncols + t->filled++];
}

int table_text(Table *t, const char *s)
{
    Cell *c = next_cell(t);
    if (!c) return -1;
    if (!s) return 0;
    c->s = strdup(s);
    if (!c->s) return -1;
    c->type = CELL_TEXT;
    return 0;
}

int table_int(Table *t, int64_t v)
{
    Cell *c = next_cell(t);
    if (!c) return -1;
    c->type = CELL_INT;
    c->i = v;
    return 0;
}

int table_real(Table *t, double v)
{
    Cell *c = next_cell(t);
    if (!c) return -1;
    c->type = CELL_REAL;
    c->r = v;
    return 0;
}

int table_null(Table *t) { return next_cell(t) ? 0 : -1; }

int table_sqlite(Table *t, sqlite3_stmt *st, int i)
{
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER: return table_int(t, sqlite3_column_int64(st, i));
    case SQLITE_FLOAT:   return table_real(t, sqlite3_column_double(st, i));
    case SQLITE_NULL:    return table_null(t);
    case SQLITE_BLOB: {
        char buf[64];
        snprintf(buf, sizeof buf, "<blob %d bytes>", sqlite3_column_bytes(st, i));
        return table_text(t, buf);
    }
    default:             return table_text(t, (const char *)sqlite3_column_text(st, i));
    }
}

void table_format_real(double v, char *buf, size_t len)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

// ---- rendering --------------------------------------------------------------------------

// Text of a cell for the human formats (table, markdown) into buf.
static const char *human_text(const Table *t, const Cell *c, size_t col, char *buf, size_t len)
{
    switch (c->type) {
    case CELL_NULL: return "";
    case CELL_INT:  snprintf(buf, len, "%lld", (long long)c->i); return buf;
    case CELL_REAL:
        if (!isfinite(c->r)) snprintf(buf, len, "%s", isnan(c->r) ? "nan" : c->r > 0 ? "inf" : "-inf");
        else snprintf(buf, len, "%.*f", t->decimals[col], c->r);
        return buf;
    case CELL_TEXT: return c->s;
    }
    return "";
}

// Display width: UTF-8 code points (continuation bytes do not count).
static size_t display_width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) w++;
    return w;
}

static int column_is_numeric(const Table *t, size_t col)
{
    int any = 0;
    for (size_t r = 0; r < t->nrows; r++) {
        CellType ty = t->cells[r * t->ncols + col].type;
        if (ty == CELL_TEXT) return 0;
        if (ty != CELL_NULL) any = 1;
    }
    return any;
}

static void pad(FILE *out, size_t n)
{
    while (n--) fputc(' ', out);
}

static void print_text(const Table *t, FILE *out, int bold)
{
    size_t *w = calloc(t->ncols ? t->ncols : 1, sizeof *w);
    int *num = calloc(t->ncols ? t->ncols : 1, sizeof *num);
    char buf[64];
    if (!w || !num) { free(w); free(num); return; }
    for (size_t c = 0; c < t->ncols; c++) {
        w[c] = display_width(t->headers[c]);
        num[c] = column_is_numeric(t, c);
        for (size_t r = 0; r < t->nrows; r++) {
            size_t cw = display_width(human_text(t, &t->cells[r * t->ncols + c], c, buf, sizeof buf));
            if (cw > w[c]) w[c] = cw;
        }
    }
    for (size_t c = 0; c < t->ncols; c++) {
        size_t hw = display_width(t->headers[c]);
        if (num[c]) pad(out, w[c] - hw);
        fprintf(out, bold ? "\033[1m%s\033[0m" : "%s", t->headers[c]);
        if (!num[c] && c + 1 < t->ncols) pad(out, w[c] - hw);
        fputs(c + 1 < t->ncols ? "  " : "\n", out);
    }
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t c = 0; c < t->ncols; c++) {
            const char *s = human_text(t, &t->cells[r * t->ncols + c], c, buf, sizeof buf);
            size_t cw = display_width(s);
            if (num[c]) pad(out, w[c] - cw);
            // Newlines inside a cell would break the alignment: show them as spaces.
            for (const char *p = s; *p; p++) fputc(*p == '\n' || *p == '\r' || *p == '\t' ? ' ' : *p, out);
            if (!num[c] && c + 1 < t->ncols) pad(out, w[c] - cw);
            fputs(c + 1 < t->ncols ? "  " : "\n", out);
        }
    free(w);
    free(num);
}

static void csv_field(FILE *out, const char *s)
{
    if (strpbrk(s, ",\"\n") == NULL) { fputs(s, out); return; }
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"') fputc('"', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

// Machine text of a number cell (csv / json).
static const char *machine_number(const Cell *c, char *buf, size_t len)
{
    if (c->type == CELL_INT) snprintf(buf, len, "%lld", (long long)c->i);
    else if (!isfinite(c->r)) return NULL;
    else table_format_real(c->r, buf, len);
    return buf;
}

static void print_csv(const Table *t, FILE *out)
{
    char buf[64];
    for (size_t c = 0; c < t->ncols; c++) {
        csv_field(out, t->headers[c]);
        fputs(c + 1 < t->ncols ? "," : "\n", out);
    }
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t c = 0; c < t->ncols; c++) {
            const Cell *cell = &t->cells[r * t->ncols + c];
            if (cell->type == CELL_TEXT) csv_field(out, cell->s);
            else if (cell->type == CELL_REAL && !isfinite(cell->r))
                fputs(isnan(cell->r) ? "nan" : cell->r > 0 ? "inf" : "-inf", out);
            else if (cell->type != CELL_NULL) fputs(machine_number(cell, buf, sizeof buf), out);
            fputs(c + 1 < t->ncols ? "," : "\n", out);
        }
}

static void json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':  fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        default:
            if (*p < 0x20) fprintf(out, "\\u%04x", *p);
            else fputc(*p, out);
        }
    }
    fputc('"', out);
}

static void print_json(const Table *t, FILE *out)
{
    char buf[64];
    fputc('[', out);
    for (size_t r = 0; r < t->nrows; r++) {
        fputs(r ? ",\n {" : "\n {", out);
        for (size_t c = 0; c < t->ncols; c++) {
            const Cell *cell = &t->cells[r * t->ncols + c];
            if (c) fputs(", ", out);
            json_string(out, t->headers[c]);
            fputs(": ", out);
            const char *num;
            if (cell->type == CELL_TEXT) json_string(out, cell->s);
            else if (cell->type == CELL_NULL || !(num = machine_number(cell, buf, sizeof buf))) fputs("null", out);
            else fputs(num, out);
        }
        fputc('}', out);
    }
    fputs(t->nrows ? "\n]\n" : "]\n", out);
}

static void md_field(FILE *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '|') fputs("\\|", out);
        else if (*s == '\n' || *s == '\r') fputs("<br>", out);
        else fputc(*s, out);
    }
}

static void print_markdown(const Table *t, FILE *out)
{
    char buf[64];
    fputc('|', out);
    for (size_t c = 0; c < t->ncols; c++) { fputc(' ', out); md_field(out, t->headers[c]); fputs(" |", out); }
    fputs("\n|", out);
    for (size_t c = 0; c < t->ncols; c++) fputs(column_is_numeric(t, c) ? " ---: |" : " --- |", out);
    fputc('\n', out);
    for (size_t r = 0; r < t->nrows; r++) {
        fputc('|', out);
        for (size_t c = 0; c < t->ncols; c++) {
            fputc(' ', out);
            md_field(out, human_text(t, &t->cells[r * t->ncols + c], c, buf, sizeof buf));
            fputs(" |", out);
        }
        fputc('\n', out);
    }
}

int table_print(const Table *t, TableFormat f, FILE *out)
{
    switch (table_format_resolve(f, out)) {
    case TABLE_CSV:      print_csv(t, out); break;
    case TABLE_JSON:     print_json(t, out); break;
    case TABLE_MARKDOWN: print_markdown(t, out); break;
    default:             print_text(t, out, isatty(fileno(out))); break;
    }
    if (fflush(out) != 0 || ferror(out)) return -1;
    return 0;
}

int table_print_stmt(sqlite3_stmt *st, TableFormat f, FILE *out, char *err, size_t errlen)
{
    int n = sqlite3_column_count(st);
    const char **names = calloc(n ? (size_t)n : 1, sizeof *names);
    if (!names) { snprintf(err, errlen, "out of memory"); return -1; }
    for (int i = 0; i < n; i++) names[i] = sqlite3_column_name(st, i);
    Table *t = table_new((size_t)n, names);
    free(names);
    if (!t) { snprintf(err, errlen, "out of memory"); return -1; }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (table_row(t) < 0) { rc = SQLITE_NOMEM; break; }
        for (int i = 0; i < n; i++) table_sqlite(t, st, i);
    }
    if (rc != SQLITE_DONE) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(sqlite3_db_handle(st)));
        table_free(t);
        return -1;
    }
    int prc = table_print(t, f, out);
    table_free(t);
    if (prc < 0) { snprintf(err, errlen, "writing output: %s", strerror(errno)); return -1; }
    return 0;
}
