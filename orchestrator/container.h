// orchestrator/container.h — the container a cell's trainer runs in, and how each runtime starts it.
// A cluster profile's "container" and a spec's "container" (which replaces it) are parsed into a
// Container; the job script then gets:
//   - a launch prefix, the words before the trainer's argv, per runtime:
//       apptainer / singularity  RT exec [--nv] [--bind B,...] [--overlay O]... IMAGE
//       charliecloud             ch-run [-b SRC[:DST]]... [-c DIR] IMAGE --
//       enroot (Pyxis)           under srun: --container-image=IMAGE --container-mounts=...
//                                --container-workdir=DIR (options of srun itself);
//                                without Slurm: enroot start [--mount SRC:DST]... IMAGE
//       podman                   podman run --rm --network=host --ipc=host [--device nvidia.com/gpu=all]
//                                [-v SRC:DST[:ro]]... --env SLURM_* ... -w DIR IMAGE
//     --nv / the GPU device only for GPU cells; the run dir and the spec dir are bound (same path
//     inside) unless a bind already covers them (charliecloud: /tmp is shared with the host already);
//   - the command inside: a simple command as it is, anything else (a compound command such as
//     `cd x && python ...`, the profile's setup lines, a runtime that does not start in the job's
//     folder) as `bash -c SCRIPT` with SCRIPT quoted once more, so all of it runs in the image.
// The trainer inside the image is `trainer` ("segx-train" on the image's PATH by default).
// defines: Container, ContainerJob, container_apply, container_check, container_copy, container_clear,
// container_prefix, container_mount_points, container_command, container_runtime_binary.
#ifndef SEGX_CONTAINER_H
#define SEGX_CONTAINER_H
#include <jansson.h>
#include <stddef.h>

#define CONTAINER_MAX_LIST 64

typedef struct {
    char runtime[32];     // apptainer singularity charliecloud enroot podman; "" = none
    char image[1024];     // file, directory (charliecloud) or reference (enroot, podman)
    char trainer[512];    // segx-train inside the image; "" = "segx-train"
    char *binds[CONTAINER_MAX_LIST]; size_t nbinds;         // SRC[:DST[:ro]]
    char *overlays[CONTAINER_MAX_LIST]; size_t noverlays;   // apptainer/singularity: FILE[:ro]
} Container;

typedef struct {
    int gpu;                 // the cell uses GPUs: --nv (apptainer), the CDI device (podman)
    const char *run_dir;     // bound at the same path (NULL: none)
    const char *spec_dir;    // bound, and the folder the command starts in (NULL: none)
} ContainerJob;

// Applies the keys of j (an image path, or {runtime, image, bind, overlay, trainer}) on top of c:
// a path sets the image (and runtime apptainer when none); an object sets the keys it has.
// 0, or -1 with err "WHERE: container: ...". Unknown keys are errors.
int  container_apply(Container *c, const json_t *j, const char *where, char *err, size_t errlen);
// The finished container is consistent: known runtime, an image with a runtime, overlays only where
// the runtime has them, bind paths without commas. 0, or -1 with err.
int  container_check(const Container *c, const char *where, char *err, size_t errlen);
int  container_copy(Container *dst, const Container *src);   // deep copy into an empty dst; -1: OOM
void container_clear(Container *c);                          // frees the lists; c becomes "none"
int  container_enabled(const Container *c);                  // a runtime is set
// The program that must be on PATH where the job runs ("ch-run" for charliecloud, "srun" for enroot
// under Slurm, ...); "" when none.
const char *container_runtime_binary(const Container *c);

// The launch prefix (malloc'd; "" when no container), every word shell-quoted as needed.
// under_srun: 1 for the words that follow `srun <options>` (Pyxis puts its options there),
// 0 for a launch without srun (the local backend, mpirun).
char *container_prefix(const Container *c, const ContainerJob *j, int under_srun);
// Charliecloud binds only onto folders that exist in the image: the bind destinations (quoted
// words, "" for other runtimes), which the job script creates in a directory image once, before
// the ranks start (ch-run --write would make each rank race to create them).
char *container_mount_points(const Container *c, const ContainerJob *j);
// The command to run after the prefix (malloc'd). command: the trainer's command line, already
// quoted. setup: the profile's setup lines (run inside the container; with no container they stay
// in the job script, and are not passed here).
char *container_command(const Container *c, const ContainerJob *j, const char *const *setup, size_t nsetup,
                        const char *command);
#endif
