// orchestrator/util/suggest.h — "did you mean": the closest of a list of words to a misspelt one.
// defines: suggest_edit_distance, suggest_closest.
// Contract: pure functions over NUL-terminated byte strings; no allocation, no output, no failure.
// Used for unknown spec keys (spec.c), unknown flags (cmd/cli.c) and unknown subcommands (cmd/main.c).
#ifndef SEGX_SUGGEST_H
#define SEGX_SUGGEST_H

// Optimal string alignment distance over bytes: insert, delete, substitute, swap two adjacent.
// Strings longer than 255 bytes: the longer length (no table that big on the stack).
int suggest_edit_distance(const char *a, const char *b);
// The candidate nearest to word when it is within max(1, strlen(word)/3) edits, else NULL (ties:
// the first). candidates ends with NULL; the result points into it.
const char *suggest_closest(const char *word, const char *const *candidates);
#endif
