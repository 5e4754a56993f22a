// orchestrator/container.c — container runtimes: parsing "container" and rendering the launch (container.h).
#include "orchestrator/container.h"
#include "orchestrator/render.h"
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// parsing

static const char *const runtimes[] = {"apptainer", "singularity", "charliecloud", "enroot", "podman", NULL};

static void free_list(char **v, size_t *n)
{
    for (size_t i = 0; i < *n; i++) free(v[i]);
    *n = 0;
}

static int set_str(const json_t *o, const char *key, char *dst, size_t cap, const char *w, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) { snprintf(err, errlen, "%s: \"%s\" must be a string", w, key); return -1; }
    if (json_string_length(v) >= cap) { snprintf(err, errlen, "%s: \"%s\" is longer than %zu characters", w, key, cap - 1); return -1; }
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

// "bind": ["/data", "/scratch:/s:ro"] (a single string is a one-element list)
static int set_list(const json_t *o, const char *key, char **dst, size_t *n, const char *w, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    json_t *one = NULL;
    if (json_is_string(v)) v = one = json_pack("[O]", v);
    int rc = -1;
    if (!json_is_array(v)) {
        snprintf(err, errlen, "%s: \"%s\" must be an array of strings", w, key);
    } else if (json_array_size(v) > CONTAINER_MAX_LIST) {
        snprintf(err, errlen, "%s: \"%s\" has more than %d entries", w, key, CONTAINER_MAX_LIST);
    } else {
        free_list(dst, n);
        size_t i; json_t *e;
        rc = 0;
        json_array_foreach(v, i, e) {
            const char *s = json_string_value(e);
            if (!s || !*s || strpbrk(s, ",\n")) {
                snprintf(err, errlen, "%s: \"%s\"[%zu] must be a non-empty path without commas or newlines", w, key, i);
                rc = -1; break;
            }
            if (!(dst[(*n)++] = strdup(s))) { snprintf(err, errlen, "out of memory"); rc = -1; break; }
        }
    }
    json_decref(one);
    return rc;
}

int container_apply(Container *c, const json_t *j, const char *where, char *err, size_t errlen)
{
    if (!j || json_is_null(j)) return 0;
    if (json_is_string(j)) {   // just an image: the runtime already set, else apptainer
        if (json_string_length(j) >= sizeof c->image) { snprintf(err, errlen, "%s: \"container\" image path is too long", where); return -1; }
        snprintf(c->image, sizeof c->image, "%s", json_string_value(j));
        if (!c->runtime[0]) snprintf(c->runtime, sizeof c->runtime, "apptainer");
        return 0;
    }
    if (!json_is_object(j)) {
        snprintf(err, errlen, "%s: \"container\" must be an image path or an object {runtime, image, bind, overlay, trainer}", where);
        return -1;
    }
    char w[1100];
    snprintf(w, sizeof w, "%s: container", where);
    static const char *const known[] = {"runtime", "image", "bind", "overlay", "trainer", NULL};
    const char *k; json_t *v;
    json_object_foreach((json_t *)j, k, v) {
        int ok = 0;
        for (const char *const *q = known; *q; q++) ok |= strcmp(*q, k) == 0;
        if (!ok) { snprintf(err, errlen, "%s: unknown key \"%s\" (known: runtime, image, bind, overlay, trainer)", w, k); return -1; }
    }
    return set_str(j, "runtime", c->runtime, sizeof c->runtime, w, err, errlen) ||
           set_str(j, "image", c->image, sizeof c->image, w, err, errlen) ||
           set_str(j, "trainer", c->trainer, sizeof c->trainer, w, err, errlen) ||
           set_list(j, "bind", c->binds, &c->nbinds, w, err, errlen) ||
           set_list(j, "overlay", c->overlays, &c->noverlays, w, err, errlen) ? -1 : 0;
}

int container_check(const Container *c, const char *where, char *err, size_t errlen)
{
    if (!c->runtime[0]) {
        if (c->image[0] || c->nbinds || c->noverlays || c->trainer[0]) {
            snprintf(err, errlen, "%s: container: \"runtime\" is required (one of apptainer, singularity, charliecloud, enroot, podman)", where);
            return -1;
        }
        return 0;
    }
    int known = 0;
    for (const char *const *r = runtimes; *r; r++) known |= strcmp(*r, c->runtime) == 0;
    if (!known) {
        snprintf(err, errlen, "%s: container: \"runtime\" '%s' is not one of apptainer, singularity, charliecloud, enroot, podman", where, c->runtime);
        return -1;
    }
    if (!c->image[0]) { snprintf(err, errlen, "%s: container: \"image\" is required with a runtime", where); return -1; }
    if (c->noverlays && strcmp(c->runtime, "apptainer") && strcmp(c->runtime, "singularity")) {
        snprintf(err, errlen, "%s: container: \"overlay\" needs apptainer or singularity; %s has no overlay images "
                 "(put the environment into the image instead)", where, c->runtime);
        return -1;
    }
    for (size_t i = 0; i < c->nbinds; i++) {
        const char *b = c->binds[i], *colon = strchr(b, ':');
        if (b[0] != '/' && strcmp(c->runtime, "apptainer") && strcmp(c->runtime, "singularity")) {
            snprintf(err, errlen, "%s: container: \"bind\"[%zu] '%s' must be an absolute path for %s", where, i, b, c->runtime);
            return -1;
        }
        if (colon && !strcmp(c->runtime, "charliecloud") && strchr(colon + 1, ':')) {
            snprintf(err, errlen, "%s: container: \"bind\"[%zu] '%s': charliecloud binds are SRC[:DST] (no :ro)", where, i, b);
            return -1;
        }
    }
    return 0;
}

int container_copy(Container *dst, const Container *src)
{
    memset(dst, 0, sizeof *dst);
    memcpy(dst->runtime, src->runtime, sizeof dst->runtime);
    memcpy(dst->image, src->image, sizeof dst->image);
    memcpy(dst->trainer, src->trainer, sizeof dst->trainer);
    for (size_t i = 0; i < src->nbinds; i++)
        if (!(dst->binds[dst->nbinds++] = strdup(src->binds[i]))) { container_clear(dst); return -1; }
    for (size_t i = 0; i < src->noverlays; i++)
        if (!(dst->overlays[dst->noverlays++] = strdup(src->overlays[i]))) { container_clear(dst); return -1; }
    return 0;
}

void container_clear(Container *c)
{
    free_list(c->binds, &c->nbinds);
    free_list(c->overlays, &c->noverlays);
    c->runtime[0] = c->image[0] = c->trainer[0] = '\0';
}

int container_enabled(const Container *c) { return c && c->runtime[0] != '\0'; }

static int is(const Container *c, const char *rt) { return strcmp(c->runtime, rt) == 0; }

const char *container_runtime_binary(const Container *c)
{
    if (!container_enabled(c)) return "";
    if (is(c, "charliecloud")) return "ch-run";
    return c->runtime;
}

// ---------------------------------------------------------------------------------------------
// rendering

typedef struct { char *s; size_t len, cap; int oom; } Buf;

static void buf_add(Buf *b, const char *s)
{
    size_t n = strlen(s);
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) { b->oom = 1; return; }
        b->s = p; b->cap = cap;
    }
    memcpy(b->s + b->len, s, n + 1);
    b->len += n;
}

static int plain_word(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || strchr("_-.,:/+=@%", *s))) return 0;
    return 1;
}

// Adds " word" (the first word without the space), shell-quoted when it needs it.
static void buf_word(Buf *b, const char *w)
{
    if (b->len) buf_add(b, " ");
    if (plain_word(w)) { buf_add(b, w); return; }
    char *q = render_shell_quote(w);
    if (!q) { b->oom = 1; return; }
    buf_add(b, q);
    free(q);
}

static void buf_wordf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_wordf(Buf *b, const char *fmt, ...)
{
    char tmp[4200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    buf_word(b, tmp);
}

static char *buf_done(Buf *b)
{
    if (b->oom) { free(b->s); return NULL; }
    return b->s ? b->s : strdup("");
}

// A bind's source and destination ("SRC", "SRC:DST", "SRC:DST:ro").
static void bind_parts(const char *b, char *src, size_t sl, char *dst, size_t dl, char *flags, size_t fl)
{
    const char *c1 = strchr(b, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    snprintf(src, sl, "%.*s", (int)(c1 ? (size_t)(c1 - b) : strlen(b)), b);
    if (!c1) snprintf(dst, dl, "%s", src);
    else snprintf(dst, dl, "%.*s", (int)(c2 ? (size_t)(c2 - c1 - 1) : strlen(c1 + 1)), c1 + 1);
    snprintf(flags, fl, "%s", c2 ? c2 + 1 : "");
}

// path is dir or inside it
static int under(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    if (n == 1 && dir[0] == '/') return 1;
    return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

// Every bind for the job: the container's own, then the run dir and the spec dir unless a bind
// (or, for charliecloud, the shared /tmp) already shows them at the same path. Each as "SRC:DST:FLAGS".
typedef struct { char src[1100], dst[1100], flags[32]; } Bind;
static size_t job_binds(const Container *c, const ContainerJob *j, Bind *out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < c->nbinds && n < max; i++, n++)
        bind_parts(c->binds[i], out[n].src, sizeof out[n].src, out[n].dst, sizeof out[n].dst, out[n].flags, sizeof out[n].flags);
    const char *autos[2] = {j ? j->spec_dir : NULL, j ? j->run_dir : NULL};
    for (int a = 0; a < 2 && n < max; a++) {
        const char *p = autos[a];
        if (!p || p[0] != '/') continue;
        int covered = is(c, "charliecloud") && under(p, "/tmp");
        for (size_t i = 0; i < n && !covered; i++)
            covered = strcmp(out[i].src, out[i].dst) == 0 && under(p, out[i].src) && strcmp(out[i].flags, "ro") != 0;
        if (covered) continue;
        snprintf(out[n].src, sizeof out[n].src, "%s", p);
        snprintf(out[n].dst, sizeof out[n].dst, "%s", p);
        out[n].flags[0] = '\0';
        n++;
    }
    return n;
}

// Host variables a podman container gets (apptainer, charliecloud and Pyxis pass the whole environment).
static const char *const podman_env[] = {"SLURM_*", "SEGX_*", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES",
                                         "OMPI_*", "PMIX_*", "PMI_*", "MASTER_ADDR", "MASTER_PORT", "NCCL_*",
                                         "OMP_NUM_THREADS", NULL};

char *container_prefix(const Container *c, const ContainerJob *j, int under_srun)
{
    Buf b = {0};
    if (!container_enabled(c)) return strdup("");
    Bind binds[CONTAINER_MAX_LIST + 2];
    size_t nb = job_binds(c, j, binds, sizeof binds / sizeof *binds);
    const char *cwd = j && j->spec_dir && j->spec_dir[0] == '/' ? j->spec_dir : NULL;
    if (is(c, "apptainer") || is(c, "singularity")) {
        buf_word(&b, c->runtime);
        buf_word(&b, "exec");
        if (j && j->gpu) buf_word(&b, "--nv");
        if (nb) {
            Buf l = {0};
            for (size_t i = 0; i < nb; i++) {
                if (i) buf_add(&l, ",");
                buf_add(&l, binds[i].src);
                if (strcmp(binds[i].src, binds[i].dst) || binds[i].flags[0]) { buf_add(&l, ":"); buf_add(&l, binds[i].dst); }
                if (binds[i].flags[0]) { buf_add(&l, ":"); buf_add(&l, binds[i].flags); }
            }
            buf_word(&b, "--bind");
            buf_word(&b, l.s ? l.s : "");
            if (l.oom) b.oom = 1;
            free(l.s);
        }
        for (size_t i = 0; i < c->noverlays; i++) { buf_word(&b, "--overlay"); buf_word(&b, c->overlays[i]); }
        buf_word(&b, c->image);
    } else if (is(c, "charliecloud")) {
        // GPUs: the image carries the host's driver libraries (ch-fromhost --nvidia at build time);
        // ch-run itself has no GPU flag. The whole host environment is passed through.
        buf_word(&b, "ch-run");
        for (size_t i = 0; i < nb; i++)
            buf_wordf(&b, strcmp(binds[i].src, binds[i].dst) ? "--bind=%s:%s" : "--bind=%s", binds[i].src, binds[i].dst);
        if (cwd) buf_wordf(&b, "--cd=%s", cwd);
        buf_word(&b, c->image);
        buf_word(&b, "--");
    } else if (is(c, "enroot") && under_srun) {
        // Pyxis: the container is a property of the srun step (GPUs through enroot's NVIDIA hook)
        buf_wordf(&b, "--container-image=%s", c->image);
        if (nb) {
            Buf l = {0};
            for (size_t i = 0; i < nb; i++) {
                if (i) buf_add(&l, ",");
                buf_add(&l, binds[i].src); buf_add(&l, ":"); buf_add(&l, binds[i].dst);
                if (binds[i].flags[0]) { buf_add(&l, ":"); buf_add(&l, binds[i].flags); }
            }
            buf_wordf(&b, "--container-mounts=%s", l.s ? l.s : "");
            if (l.oom) b.oom = 1;
            free(l.s);
        }
        if (cwd) buf_wordf(&b, "--container-workdir=%s", cwd);
    } else if (is(c, "enroot")) {
        buf_word(&b, "enroot");
        buf_word(&b, "start");
        for (size_t i = 0; i < nb; i++) {
            buf_word(&b, "--mount");
            buf_wordf(&b, "%s:%s%s%s", binds[i].src, binds[i].dst, binds[i].flags[0] ? ":" : "", binds[i].flags);
        }
        buf_word(&b, c->image);
    } else if (is(c, "podman")) {
        buf_word(&b, "podman");
        buf_word(&b, "run");
        buf_word(&b, "--rm");
        buf_word(&b, "--network=host");   // MPI/NCCL rendezvous on the host's addresses
        buf_word(&b, "--ipc=host");       // shared memory between the ranks of a node
        if (j && j->gpu) buf_word(&b, "--device=nvidia.com/gpu=all");   // CDI (nvidia-ctk cdi generate)
        for (size_t i = 0; i < nb; i++) {
            buf_word(&b, "-v");
            buf_wordf(&b, "%s:%s%s%s", binds[i].src, binds[i].dst, binds[i].flags[0] ? ":" : "", binds[i].flags);
        }
        for (const char *const *e = podman_env; *e; e++) buf_wordf(&b, "--env=%s", *e);
        if (cwd) buf_wordf(&b, "--workdir=%s", cwd);
        buf_word(&b, c->image);
    }
    return buf_done(&b);
}

char *container_mount_points(const Container *c, const ContainerJob *j)
{
    Buf b = {0};
    if (!container_enabled(c) || !is(c, "charliecloud")) return strdup("");
    Bind binds[CONTAINER_MAX_LIST + 2];
    size_t nb = job_binds(c, j, binds, sizeof binds / sizeof *binds);
    for (size_t i = 0; i < nb; i++) buf_word(&b, binds[i].dst);
    return buf_done(&b);
}

char *container_command(const Container *c, const ContainerJob *j, const char *const *setup, size_t nsetup,
                        const char *command)
{
    int in = container_enabled(c);
    int simple = render_shell_is_simple(command);
    // enroot start begins in the image's own folder: the command goes to the job's folder first
    int cd = in && is(c, "enroot") && j && j->spec_dir && j->spec_dir[0] == '/';
    if (simple && !(in && nsetup) && !cd) return strdup(command);
    Buf s = {0};
    if (cd) {
        char *q = render_shell_quote(j->spec_dir);
        buf_add(&s, "cd ");
        buf_add(&s, q ? q : "/");
        buf_add(&s, " || exit 1\n");
        free(q);
    }
    if (in)
        for (size_t i = 0; i < nsetup; i++) { buf_add(&s, setup[i]); buf_add(&s, "\n"); }
    // a simple command replaces the shell, so signals (USR1/TERM: checkpoint) reach the trainer itself
    if (simple) buf_add(&s, "exec ");
    buf_add(&s, command);
    if (s.oom) { free(s.s); return NULL; }
    char *q = render_shell_quote(s.s);
    free(s.s);
    if (!q) return NULL;
    size_t n = strlen(q) + 16;
    char *out = malloc(n);
    if (out) snprintf(out, n, "bash -c %s", q);
    free(q);
    return out;
}
