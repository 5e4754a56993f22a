// orchestrator/runfile.c — bounded, non-blocking reads of run-dir files (see runfile.h).
#include "orchestrator/runfile.h"
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *kind_of(mode_t m)
{
    return S_ISFIFO(m) ? "a fifo" : S_ISCHR(m) ? "a character device" : S_ISBLK(m) ? "a block device"
         : S_ISSOCK(m) ? "a socket" : S_ISDIR(m) ? "a directory" : "not a plain file";
}

// runfile_open, also giving the file's size at open (for runfile_read's first buffer).
static int open_sized(const char *path, int *fd_out, off_t *size, char *err, size_t errlen);

int runfile_open(const char *path, int *fd_out, char *err, size_t errlen)
{
    off_t size;
    return open_sized(path, fd_out, &size, err, errlen);
}

static int open_sized(const char *path, int *fd_out, off_t *size, char *err, size_t errlen)
{
    *fd_out = -1;
    // O_NONBLOCK: opening a FIFO without a writer would otherwise wait forever
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR) return 1;
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        snprintf(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(sb.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file (%s); not read", path, kind_of(sb.st_mode));
        close(fd);
        return -1;
    }
    // O_NONBLOCK stays: it changes nothing for a regular file (reads of one never block), and
    // clearing it cost two system calls per file (collect opens several per attempt).
    *size = sb.st_size;
    *fd_out = fd;
    return 0;
}

static ssize_t read_some(int fd, char *p, size_t n)
{
    for (;;) {
        ssize_t r = read(fd, p, n);
        if (r >= 0 || errno != EINTR) return r;
    }
}

int runfile_read(const char *path, size_t max, char **out, size_t *len, char *err, size_t errlen)
{
    *out = NULL;
    *len = 0;
    int fd;
    off_t size;
    int rc = open_sized(path, &fd, &size, err, errlen);
    if (rc) return rc;
    // too big already: refused without reading it (the loop below still bounds growth)
    if ((unsigned long long)size > (unsigned long long)max) {
        snprintf(err, errlen, "%s: larger than %zu bytes; not read", path, max);
        close(fd);
        return -1;
    }
    // a buffer of the file's size (+1 to see the end in the same read), grown if the file grows
    size_t cap = (size_t)size + 1 > 4096 ? (size_t)size + 1 : 4096, n = 0;
    if (cap > max + 1) cap = max + 1;
    char *buf = malloc(cap + 1);
    if (!buf) { close(fd); snprintf(err, errlen, "%s: out of memory", path); return -1; }
    for (;;) {
        if (n == cap) {
            if (cap > max) break;
            size_t ncap = cap * 2 > max + 1 ? max + 1 : cap * 2;
            char *p = realloc(buf, ncap + 1);
            if (!p) { free(buf); close(fd); snprintf(err, errlen, "%s: out of memory", path); return -1; }
            buf = p;
            cap = ncap;
        }
        ssize_t r = read_some(fd, buf + n, cap - n);
        if (r < 0) {
            snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
            free(buf);
            close(fd);
            return -1;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    if (n > max) {
        snprintf(err, errlen, "%s: larger than %zu bytes; not read", path, max);
        free(buf);
        return -1;
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return 0;
}

// ---- line reader ------------------------------------------------------------------------------

struct RunLines {
    int fd, eof, skipping;
    char *buf;
    size_t cap, start, end, max_line;
    long lineno;
    char path[4096];
};

int runfile_lines_open(const char *path, size_t max_line, RunLines **out, char *err, size_t errlen)
{
    *out = NULL;
    int fd;
    int rc = runfile_open(path, &fd, err, errlen);
    if (rc) return rc;
    RunLines *r = calloc(1, sizeof *r);
    size_t cap = max_line + 65536;
    char *buf = r ? malloc(cap) : NULL;
    if (!buf) {
        free(r);
        close(fd);
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    *r = (RunLines){.fd = fd, .buf = buf, .cap = cap, .max_line = max_line};
    snprintf(r->path, sizeof r->path, "%s", path);
    *out = r;
    return 0;
}

int runfile_lines_mem(const char *path, char *buf, size_t len, size_t max_line, RunLines **out, char *err, size_t errlen)
{
    *out = NULL;
    RunLines *r = calloc(1, sizeof *r);
    if (!r) {
        free(buf);
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    *r = (RunLines){.fd = -1, .eof = 1, .buf = buf, .cap = len, .end = len, .max_line = max_line};
    snprintf(r->path, sizeof r->path, "%s", path);
    *out = r;
    return 0;
}

// Reads more bytes after r->end (compacting first). 1 read some, 0 EOF, -1 error.
static int fill(RunLines *r, char *err, size_t errlen)
{
    if (r->eof) return 0;
    if (r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
    if (r->end == r->cap) return 1;   // full: the caller deals with a long line
    ssize_t n = read_some(r->fd, r->buf + r->end, r->cap - r->end);
    if (n < 0) {
        snprintf(err, errlen, "%s: read error: %s", r->path, strerror(errno));
        return -1;
    }
    if (n == 0) { r->eof = 1; return 0; }
    r->end += (size_t)n;
    return 1;
}

int runfile_lines_next(RunLines *r, const char **line, size_t *len, int *too_long, int *no_newline, long *lineno,
                       char *err, size_t errlen)
{
    *too_long = *no_newline = 0;
    // The rest of a line that was too long: discarded up to its '\n'.
    while (r->skipping) {
        char *nl = memchr(r->buf + r->start, '\n', r->end - r->start);
        if (nl) { r->start = (size_t)(nl - r->buf) + 1; r->skipping = 0; break; }
        r->start = r->end;
        int f = fill(r, err, errlen);
        if (f < 0) return -1;
        if (f == 0) return 0;
    }
    for (;;) {
        char *p = r->buf + r->start;
        size_t have = r->end - r->start;
        char *nl = memchr(p, '\n', have < r->max_line + 1 ? have : r->max_line + 1);
        if (nl) {
            *line = p;
            *len = (size_t)(nl - p);
            r->start += *len + 1;
            *lineno = ++r->lineno;
            return 1;
        }
        if (have > r->max_line) {
            *line = p;
            *len = r->max_line;
            *too_long = 1;
            char *end = memchr(p + r->max_line, '\n', have - r->max_line);
            if (end) r->start = (size_t)(end - r->buf) + 1;
            else r->start = r->end, r->skipping = 1;   // its end is further on in the file
            *lineno = ++r->lineno;
            return 1;
        }
        int f = fill(r, err, errlen);
        if (f < 0) return -1;
        if (f == 0) {
            if (r->end == r->start) return 0;
            *line = r->buf + r->start;
            *len = r->end - r->start;
            *no_newline = 1;
            r->start = r->end;
            *lineno = ++r->lineno;
            return 1;
        }
    }
}

void runfile_lines_close(RunLines *r)
{
    if (!r) return;
    if (r->fd >= 0) close(r->fd);
    free(r->buf);
    free(r);
}

int runfile_read_code(const char *run_dir, const char *name, int *code)
{
    char p[PATH_MAX + 32], e[PATH_MAX + 128];
    snprintf(p, sizeof p, "%s/%s", run_dir, name);
    char *text;
    size_t len;
    if (runfile_read(p, 64, &text, &len, e, sizeof e) != 0) return -1;
    int rc = runfile_parse_code(text, code);
    free(text);
    return rc;
}

int runfile_parse_code(const char *text, int *code)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    while (*end && isspace((unsigned char)*end)) end++;
    if (end == text || *end || errno || v < -1000000 || v > 1000000) return -1;
    *code = (int)v;
    return 0;
}

JobState runfile_eval_state(const char *run_dir, int *eval_code, int *train_code)
{
    *eval_code = *train_code = -1;
    int have_eval = runfile_read_code(run_dir, "eval_exit_code", eval_code) == 0;
    int have_train = !have_eval && runfile_read_code(run_dir, "exit_code", train_code) == 0;
    if (!have_eval) *eval_code = -1;
    return job_eval_state(have_eval, *eval_code, have_train, *train_code);
}

int runfile_dir_has_run_output(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *de;
    int any = 0;
    while (!any && (de = readdir(d)))
        any = strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strcmp(de->d_name, "job.sh") &&
              strcmp(de->d_name, "eval.sh");
    closedir(d);
    return any;
}
