// orchestrator/util/paths.c — install-relative paths of segx (see paths.h).
#include "orchestrator/util/paths.h"
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// 1 when p is a folder.
static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

// 1 when p is a regular file this process may execute.
static int is_exec(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0;
}

const char *paths_self_path(void)
{
    static char buf[PATH_MAX];
    const char *env = getenv("SEGX_SELF");
    if (env && *env) { snprintf(buf, sizeof buf, "%s", env); return buf; }
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return "segx";
    buf[n] = 0;
    return buf;
}

const char *paths_self_dir(void)
{
    static char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", paths_self_path());
    char *slash = strrchr(buf, '/');
    if (slash) *slash = 0;
    else snprintf(buf, sizeof buf, ".");
    return buf;
}

const char *paths_templates_dir(void)
{
    static char buf[PATH_MAX];
    const char *env = getenv("SEGX_TEMPLATES");
    if (env && *env) { snprintf(buf, sizeof buf, "%s", env); return buf; }
    // bin/segx -> templates; BUILD/bin/segx (per-engineer build dirs) -> ../../templates
    const char *self = paths_self_dir();
    snprintf(buf, sizeof buf, "%s/../templates", self);
    if (is_dir(buf)) return buf;
    snprintf(buf, sizeof buf, "%s/../../templates", self);
    if (is_dir(buf)) return buf;
    // an installed segx (make install): PREFIX/bin/segx -> PREFIX/share/segx/templates
    snprintf(buf, sizeof buf, "%s/../share/segx/templates", self);
    if (is_dir(buf)) return buf;
    const char *root = getenv("SEGX_ROOT");
    if (root && *root) {
        snprintf(buf, sizeof buf, "%s/templates", root);
        if (is_dir(buf)) return buf;
    }
    return "templates";
}

const char *paths_trainer_path(void)
{
    static char buf[PATH_MAX];
    const char *env = getenv("SEGX_TRAIN");
    if (env && *env) { snprintf(buf, sizeof buf, "%s", env); return buf; }
    snprintf(buf, sizeof buf, "%s/segx-train", paths_self_dir());
    if (is_exec(buf)) return buf;
    const char *bin = getenv("SEGX_BIN");
    if (bin && *bin) {
        snprintf(buf, sizeof buf, "%s/segx-train", bin);
        if (is_exec(buf)) return buf;
    }
    return "segx-train";
}
