// orchestrator/table.h — tabular output shared by the commands: an aligned table for people,
// csv / json / markdown for machines and documents. defines: Table, TableFormat, table_*.
// Contract: build a table cell by cell (text, integer, real, NULL), then print it once.
//  * table:    columns aligned (numbers right), reals rounded to the column's decimals.
//  * csv:      RFC 4180 quoting, LF line ends: header line, fields with , " CR or LF quoted, "" for a quote, NULL empty.
//  * json:     an array of objects, keys = headers, numbers as numbers (shortest exact form,
//              non-finite as null), NULL as null; always valid JSON (UTF-8 passed through).
//  * markdown: a pipe table, | in cells escaped.
// Machine formats never round: a real prints as the shortest text that reads back to it.
#ifndef SEGX_TABLE_H
#define SEGX_TABLE_H
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { TABLE_AUTO, TABLE_TEXT, TABLE_CSV, TABLE_JSON, TABLE_MARKDOWN } TableFormat;

// "table" | "csv" | "json" | "markdown" (also "md", "auto"); 0, or -1 for anything else.
int table_format_parse(const char *name, TableFormat *out);
// TABLE_AUTO resolves to TABLE_TEXT (a TTY gets bold headers, a pipe plain ones).
TableFormat table_format_resolve(TableFormat f, FILE *out);

typedef struct Table Table;

Table *table_new(size_t ncols, const char *const *headers);
void   table_free(Table *t);
// Decimals shown for reals in column col in the human formats (default 4).
void   table_set_decimals(Table *t, size_t col, int decimals);
// Appends a row; then fill it left to right with exactly ncols cells.
int    table_row(Table *t);
int    table_text(Table *t, const char *s);      // NULL s = NULL cell
int    table_int(Table *t, int64_t v);
int    table_real(Table *t, double v);
int    table_null(Table *t);
// One cell from column i of a stepped statement (type taken from SQLite).
int    table_sqlite(Table *t, sqlite3_stmt *st, int i);
size_t table_nrows(const Table *t);

// 0, or -1 on a write error (errno set).
int table_print(const Table *t, TableFormat f, FILE *out);

// Steps a prepared statement to the end into a table with its column names and prints it.
// 0, or -1 with err (the SQLite message).
int table_print_stmt(sqlite3_stmt *st, TableFormat f, FILE *out, char *err, size_t errlen);

// Shortest "%.*g" text that reads back to exactly v ("null" style handling is the caller's).
void table_format_real(double v, char *buf, size_t len);

#endif
