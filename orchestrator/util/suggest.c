// orchestrator/util/suggest.c — edit distance and the closest candidate (see suggest.h).
#include "orchestrator/util/suggest.h"
#include <string.h>

// Optimal string alignment distance: Levenshtein plus adjacent transpositions ("modle" -> "model"
// is one edit), the commonest typo in keys and flags.
int suggest_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 255 || lb > 255) return (int)(la > lb ? la : lb);
    int rows[3][256];
    int *pp = rows[0], *prev = rows[1], *cur = rows[2];
    for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            int m = sub < del ? sub : del;
            m = m < ins ? m : ins;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && pp[j - 2] + 1 < m) m = pp[j - 2] + 1;
            cur[j] = m;
        }
        int *t = pp;
        pp = prev;
        prev = cur;
        cur = t;
    }
    return prev[lb];
}

const char *suggest_closest(const char *word, const char *const *candidates)
{
    int limit = (int)strlen(word) / 3;
    if (limit < 1) limit = 1;
    const char *best = NULL;
    int bestd = limit + 1;
    for (const char *const *c = candidates; *c; c++) {
        int d = suggest_edit_distance(word, *c);
        if (d < bestd) { bestd = d; best = *c; }
    }
    return best;
}
