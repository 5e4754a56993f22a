// orchestrator/util/paths.h — where an installed or built segx finds itself, its templates and
// segx-train. defines: paths_self_path, paths_self_dir, paths_templates_dir, paths_trainer_path.
// Contract: no output, no failure (each falls back to a name for PATH or the working folder); the
// result is in a static buffer, valid until the same function is called again (not thread-safe).
// Read: the environment (SEGX_SELF, SEGX_TEMPLATES, SEGX_ROOT, SEGX_TRAIN, SEGX_BIN) and
// /proc/self/exe; nothing is cached, so a changed environment is seen on the next call.
#ifndef SEGX_PATHS_H
#define SEGX_PATHS_H

// Absolute path of the segx binary itself ($SEGX_SELF overrides; tests link libsegx into other
// programs and set it), else "segx".
const char *paths_self_path(void);
// Directory of the running segx binary, e.g. "/opt/segx/bin" ("." when the path has no folder).
const char *paths_self_dir(void);
// $SEGX_TEMPLATES, else <dir of the segx binary>/../templates (bin/segx), ../../templates
// (BUILD/bin/segx), ../share/segx/templates (make install), else $SEGX_ROOT/templates, else
// "templates".
const char *paths_templates_dir(void);
// $SEGX_TRAIN, else segx-train beside the segx binary, else $SEGX_BIN/segx-train, else
// "segx-train" (PATH). Only an executable regular file counts as found.
const char *paths_trainer_path(void);
#endif
