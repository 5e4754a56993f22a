// orchestrator/util/fileio.h — whole files in and out, directories. defines: file_read,
// file_write_atomic, file_write_replace, file_mkdir_p.
// Contract: no output; errors come back as "<path>: <why>" in err (errno kept where a function
// says so). For files a job leaves in a run dir (which may be FIFOs or huge) use runfile.h instead:
// these are for files segx or the user owns (specs, templates, job scripts, state files).
#ifndef SEGX_FILEIO_H
#define SEGX_FILEIO_H
#include <stddef.h>
#include <sys/types.h>

// The whole file, NUL-terminated (malloc'd; *len without the NUL, len may be NULL). A file of more
// than max bytes (0: no limit) is an error. NULL with err (and errno) on failure.
char *file_read(const char *path, size_t max, size_t *len, char *err, size_t errlen);

// Replaces path with data[0..n) so that a reader sees the old file or the new one, never a part,
// and a crash right after the return keeps the new one: written to a temporary file in the same
// folder (".NAME.tmp.XXXXXX", hidden from folder scans), fsync'd, renamed over path, and the folder
// fsync'd. mode: the new file's permissions.
// 0, or -1 with err (the temporary file removed).
int file_write_atomic(const char *path, const void *data, size_t n, mode_t mode, char *err, size_t errlen);

// As file_write_atomic without the two fsyncs: a reader, or a process killed at any point, sees
// the old file or the new one, never a part; only a power loss right after may leave either (or
// an empty file on a file system without rename-replace ordering). For many small files that can
// be made again (plan's job scripts: 10,000 fsyncs made `segx plan` ~5x slower).
int file_write_replace(const char *path, const void *data, size_t n, mode_t mode, char *err, size_t errlen);

// mkdir -p: path and every missing parent, with mode. 0 (also when it exists as a folder), or -1
// with errno.
int file_mkdir_p(const char *path, mode_t mode);
#endif
