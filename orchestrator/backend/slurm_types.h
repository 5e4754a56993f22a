// orchestrator/backend/slurm_types.h — plain data shared by the Slurm backends; includes nothing of
// backend.h, so that the libslurm wrapper (slurm_lib.c) can include <slurm/slurm.h>, whose job_states
// enum uses the same names (JOB_PENDING, ...) as segx's JobState.
// defines: SlurmOpts (a job script's #SBATCH options), SlurmJobInfo (one job as slurmctld reports it).
#ifndef SEGX_SLURM_TYPES_H
#define SEGX_SLURM_TYPES_H

typedef struct {
    char job_name[256], partition[128], account[64], qos[64], time[32], constraint[256];
    char output[1024], error[1024], dependency[256], array[128], chdir[1024];
    char gres[128];          // "gpu:a100:2" (from --gres or --gpus-per-node), "" when none
    char comment[256];
    int nodes, ntasks, ntasks_per_node, cpus_per_task;   // 0 = unset
    long mem_mb;             // 0 = unset
    int requeue;             // -1 unset, 0 --no-requeue, 1 --requeue
    int hold;                // --hold: submitted held (priority 0) until released
    int open_append;         // --open-mode: -1 unset, 0 truncate, 1 append (a requeued run keeps the log)
    int signal_num, signal_time, signal_batch_only;      // --signal=[B:]SIG[@TIME]; signal_num 0 = unset
    int kill_invalid_dep;    // --kill-on-invalid-dep: -1 unset, 0 no, 1 yes (cancel when a dependency failed)
} SlurmOpts;

typedef struct {
    char job_id[64];         // "123", or "123_4" for an array task
    char state[32];          // Slurm's name: "PENDING", "RUNNING", "COMPLETED", "OUT_OF_MEMORY", ...
    char reason[64];         // "None", "NonZeroExitCode", "Resources", ...
    char state_desc[256];    // details, may be empty
    char comment[256];
    char nodes[256];
    int  exit_status;        // the wait(2) status Slurm keeps (exit 1 -> 256); -1 unknown
    int  restarts;
    double submit_time, start_time, end_time;   // unix seconds, 0 unknown
} SlurmJobInfo;
#endif
