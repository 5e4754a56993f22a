// orchestrator/runfile.h — reading the files jobs leave in run dirs (metrics.jsonl, result.json,
// progress.json, exit_code, ...) without trusting them. defines: runfile_open, runfile_read,
// RunLines, runfile_lines_open, runfile_lines_next, runfile_lines_close, RUNFILE_*.
// Contract:
//  * Only regular files are read. A FIFO, a device (a link to /dev/zero), a socket or a directory
//    is refused with "PATH: not a regular file (a fifo)" and never waited on: files are opened
//    with O_NONBLOCK and checked with fstat on the open descriptor (no stat/open race).
//  * Memory is bounded: runfile_read refuses a file larger than its limit, and the line reader
//    holds at most one line of RUNFILE_MAX_LINE bytes; a longer line is reported (and skipped to
//    its end) instead of growing a buffer.
//  * Return codes: 0 read, 1 the file does not exist (ENOENT/ENOTDIR: not an error for a job that
//    has not written it yet), -1 any other failure with err ("PATH: why").
#ifndef SEGX_RUNFILE_H
#define SEGX_RUNFILE_H
#include "orchestrator/backend/jobstate.h"
#include <stddef.h>

#define RUNFILE_MAX_LINE (1u << 20)        // metrics lines: 1 MiB (per-class IoU of 20k classes fits)
#define RUNFILE_MAX_JSON (16u << 20)       // result.json, env.json, eval.json, progress.json: 16 MiB
#define RUNFILE_MAX_TRACE (256u << 20)     // trace.json (Chrome trace, --profile): 256 MiB

// A read-only descriptor of a regular file (the caller closes it).
int runfile_open(const char *path, int *fd, char *err, size_t errlen);

// The whole file (NUL-terminated, *len bytes) if it is at most max bytes; the caller frees *out.
int runfile_read(const char *path, size_t max, char **out, size_t *len, char *err, size_t errlen);

typedef struct RunLines RunLines;

int runfile_lines_open(const char *path, size_t max_line, RunLines **r, char *err, size_t errlen);
// The next line without its '\n' (not NUL-terminated inside the file's bytes; *line is valid until
// the next call). 1 a line, 0 end of file, -1 read error (err). *too_long: the line was longer than
// max_line (*line then holds its first max_line bytes). *no_newline: the file ends without one.
// *lineno: 1-based number of the returned line.
int runfile_lines_next(RunLines *r, const char **line, size_t *len, int *too_long, int *no_newline, long *lineno,
                       char *err, size_t errlen);
void runfile_lines_close(RunLines *r);
// A line reader over bytes already read (runfile_read's buffer, which it takes over and frees):
// the same lines, flags and numbers as runfile_lines_open on the file that held them.
int runfile_lines_mem(const char *path, char *buf, size_t len, size_t max_line, RunLines **r, char *err, size_t errlen);

// An exit code file's text: a whole number from -1000000 to 1000000, blanks after it allowed.
// 0 with *code, -1 when it is not one (an empty file: the job is still writing it).
int runfile_parse_code(const char *text, int *code);
// The exit code a job left in RUN_DIR/name ("exit_code", "eval_exit_code"): 0 with *code, -1 when
// the file is absent, not a regular file, or holds no number. (status and collect both read them.)
int runfile_read_code(const char *run_dir, const char *name, int *code);

// An eval job the scheduler no longer knows, decided from its attempt's files (job_eval_state):
// its eval_exit_code (*eval_code), else the train job's exit_code other than 0 (*train_code: the
// afterok dependency can never be met, cancelled), else JOB_UNKNOWN.
JobState runfile_eval_state(const char *run_dir, int *eval_code, int *train_code);

// Whether run dir `dir` holds anything but what plan or submit render (job.sh, eval.sh): a job ran
// there. 0 when it cannot be opened.
int runfile_dir_has_run_output(const char *dir);

#endif
