// orchestrator/util/units.c — Slurm time limits and memory sizes (see units.h).
#include "orchestrator/util/units.h"
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

long units_time_s(const char *s)
{
    if (!s || !*s) return -1;
    long d = 0, f[3] = {0, 0, 0};
    int nf = 0;
    const char *p = s;
    const char *dash = strchr(s, '-');
    if (dash) {
        if (dash == s || dash - s > 5) return -1;   // 5 digits of days is already over the limit
        for (const char *q = s; q < dash; q++)
            if (!isdigit((unsigned char)*q)) return -1;
        d = strtol(s, NULL, 10);
        p = dash + 1;
    }
    while (*p) {
        size_t n = 0;
        while (isdigit((unsigned char)p[n])) n++;
        if (n == 0 || n > 7 || nf == 3) return -1;   // 7 digits: nothing overflows
        f[nf++] = strtol(p, NULL, 10);
        p += n;
        if (*p == ':') { p++; if (!*p) return -1; }
        else if (*p) return -1;
    }
    if (nf == 0) return -1;
    long t;
    if (dash) {   // D-H, D-H:M, D-H:M:S
        if (f[0] > 23 || f[1] > 59 || f[2] > 59) return -1;
        t = ((d * 24 + f[0]) * 60 + f[1]) * 60 + f[2];
    } else if (nf == 1) {
        t = f[0] * 60;                                // minutes
    } else if (nf == 2) {
        if (f[1] > 59) return -1;
        t = f[0] * 60 + f[1];                         // M:S
    } else {
        if (f[1] > 59 || f[2] > 59) return -1;
        t = (f[0] * 60 + f[1]) * 60 + f[2];           // H:M:S
    }
    return t > UNITS_MAX_TIME_S ? -1 : t;
}

long units_mem_mb(const char *s)
{
    if (!s || !isdigit((unsigned char)*s)) return -1;   // no sign, blank, "inf" or ".5"
    size_t n = 0;
    while (isdigit((unsigned char)s[n])) n++;
    if (n > 13) return -1;                               // 10^13 MB is beyond any limit below
    long v = strtol(s, NULL, 10);
    const char *u = s + n;
    long mb;
    switch (*u) {
    case '\0': return v <= (1L << 40) ? v : -1;          // MB, no unit letter, so no B either
    case 'k': case 'K': mb = (v + 1023) / 1024; break;   // Slurm rounds K up
    case 'm': case 'M': mb = v; break;
    case 'g': case 'G': mb = v > (1L << 30) ? -1 : v * 1024; break;
    case 't': case 'T': mb = v > (1L << 20) ? -1 : v * 1024 * 1024; break;
    default: return -1;
    }
    if (u[1] && !((u[1] == 'b' || u[1] == 'B') && !u[2])) return -1;
    return mb >= 0 && mb <= (1L << 40) ? mb : -1;
}
