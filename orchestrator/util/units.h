// orchestrator/util/units.h — the two quantities specs, cluster profiles and #SBATCH lines share:
// time limits and memory sizes, read by Slurm's own rules so that segx and sbatch agree on what a
// value means. defines: units_time_s, units_mem_mb, UNITS_MAX_TIME_S.
// Contract: pure functions, no output; -1 for anything Slurm would refuse (and for what does not
// fit), never a guess.
#ifndef SEGX_UNITS_H
#define SEGX_UNITS_H

#define UNITS_MAX_TIME_S (3650L * 86400)   // ten years: more is a typo, not a time limit

// A Slurm time limit -> seconds: "M" (minutes), "M:S", "H:M:S", "D-H", "D-H:M", "D-H:M:S". The
// first field may be any size (up to 7 digits: "120:30" is 120 minutes 30 s); a field after the
// first is a clock field (minutes and seconds 0-59, hours 0-23 after a day count), so "99:99:99"
// is refused rather than read as 100:40:39. "UNLIMITED" is not a number here (the Slurm backends
// look for it first). -1 when it is no such time or is over UNITS_MAX_TIME_S.
long units_time_s(const char *s);

// A Slurm memory size -> MB (Slurm's str_to_mbytes): a whole number with an optional unit K, M,
// G or T (any case, powers of 1024), optionally followed by B ("16G", "16GB", "512m"); no unit is
// MB. K rounds up to whole MB (1025K is 2 MB). Refused, as sbatch refuses them: fractions
// ("1.5G"), signs, blanks, a bare B ("100B"), other units, anything after the unit. 0 is a valid
// size (Slurm: all the memory of the node); callers that need more check themselves. -1 when
// refused or over 2^40 MB.
long units_mem_mb(const char *s);
#endif
