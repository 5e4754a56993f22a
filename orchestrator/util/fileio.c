// orchestrator/util/fileio.c — whole files, atomic replacement, mkdir -p (see fileio.h).
#include "orchestrator/util/fileio.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *file_read(const char *path, size_t max, size_t *len, char *err, size_t errlen)
{
    if (len) *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { int e = errno; snprintf(err, errlen, "%s: %s", path, strerror(e)); errno = e; return NULL; }
    size_t cap = 8192, n = 0;
    struct stat sb;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0) cap = (size_t)sb.st_size + 1;
    char *buf = malloc(cap);
    int e = 0;
    for (;;) {
        if (!buf) { e = ENOMEM; break; }
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) { e = ENOMEM; break; }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { e = errno; break; }
        if (r == 0) break;
        n += (size_t)r;
        if (max && n > max) { e = EFBIG; break; }
    }
    close(fd);
    if (e) {
        free(buf);
        if (e == EFBIG) snprintf(err, errlen, "%s: larger than %zu bytes", path, max);
        else snprintf(err, errlen, "%s: %s", path, strerror(e));
        errno = e;
        return NULL;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

static int fsync_dir_of(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == dir) dir[1] = 0;
    else *slash = 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    // some file systems cannot sync a folder: the rename itself is done
    return rc < 0 && errno != EINVAL && errno != EROFS ? -1 : 0;
}

// Both writers: temp file, rename over path; durable: fsync the file before and its folder after.
static int write_via_rename(const char *path, const void *data, size_t n, mode_t mode, int durable, char *err,
                            size_t errlen)
{
    // a hidden name beside it (folder scans skip dot files): DIR/.BASE.tmp.XXXXXX
    char tmp[PATH_MAX + 32];
    const char *slash = strrchr(path, '/');
    int dirlen = slash ? (int)(slash - path + 1) : 0;
    if (snprintf(tmp, sizeof tmp, "%.*s.%s.tmp.XXXXXX", dirlen, path, path + dirlen) >= (int)sizeof tmp) {
        snprintf(err, errlen, "%s: path too long", path);
        return -1;
    }
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) { snprintf(err, errlen, "%s: cannot create a temporary file: %s", path, strerror(errno)); return -1; }
    const char *p = data;
    size_t left = n;
    int e = 0;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) { e = errno; break; }
        p += w;
        left -= (size_t)w;
    }
    if (!e && fchmod(fd, mode) < 0) e = errno;
    if (!e && durable && fsync(fd) < 0) e = errno;
    if (close(fd) < 0 && !e) e = errno;
    if (!e && rename(tmp, path) < 0) e = errno;
    if (e) {
        unlink(tmp);
        snprintf(err, errlen, "%s: cannot write: %s", path, strerror(e));
        return -1;
    }
    if (durable && fsync_dir_of(path) < 0) { snprintf(err, errlen, "%s: written, but its folder could not be synced: %s", path, strerror(errno)); return -1; }
    return 0;
}

int file_write_atomic(const char *path, const void *data, size_t n, mode_t mode, char *err, size_t errlen)
{
    return write_via_rename(path, data, n, mode, 1, err, errlen);
}

int file_write_replace(const char *path, const void *data, size_t n, mode_t mode, char *err, size_t errlen)
{
    return write_via_rename(path, data, n, mode, 0, err, errlen);
}

int file_mkdir_p(const char *path, mode_t mode)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p) { errno = ENAMETOOLONG; return -1; }
    struct stat sb;
    if (stat(p, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) return 0;
        errno = ENOTDIR;
        return -1;
    }
    for (char *q = p + 1; *q; q++) {
        if (*q != '/') continue;
        *q = 0;
        int rc = mkdir(p, mode);
        *q = '/';
        if (rc < 0 && errno != EEXIST) return -1;
    }
    if (mkdir(p, mode) < 0 && errno != EEXIST) return -1;
    if (stat(p, &sb) < 0) return -1;
    if (!S_ISDIR(sb.st_mode)) { errno = ENOTDIR; return -1; }
    return 0;
}
