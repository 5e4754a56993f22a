-- segx results database (SQLite). This file is a PUBLIC interface: users query it with sqlite3.
-- Version: PRAGMA user_version (set at the end). Changing a table means a new migration in
-- db/migrations/NNN_name.sql and a bumped user_version; never edit a released table in place.
--
-- Invariants (enforced in db/ and orchestrator/ code, restated here):
--  * cells.key is a hash of the cell's canonical parameters; (experiment_id, key) is unique, so
--    re-planning a spec never duplicates a cell.
--  * an attempt is one submission of a cell; attempt numbers start at 1 and only grow.
--  * run dirs are written only by jobs; ingest (segx collect) is idempotent: re-running it
--    replaces an attempt's epoch rows with the same rows.
--  * times are unix seconds (REAL), durations seconds.

CREATE TABLE experiments (
  id          INTEGER PRIMARY KEY,
  name        TEXT NOT NULL UNIQUE,
  spec_path   TEXT,                 -- where the spec was read from (absolute)
  spec_text   TEXT NOT NULL,        -- the spec as planned (latest plan)
  run_root    TEXT NOT NULL,        -- runs/<experiment> (absolute)
  created_at  REAL NOT NULL,
  updated_at  REAL NOT NULL
);

CREATE TABLE cells (
  id            INTEGER PRIMARY KEY,
  experiment_id INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
  key           TEXT NOT NULL,      -- hex hash of params (canonical JSON, sorted keys)
  params        TEXT NOT NULL,      -- canonical JSON of every parameter of the cell
  group_key     TEXT NOT NULL,      -- hash of params without seed: cells that differ only by seed
  scaling_key   TEXT NOT NULL,      -- hash of params without seed/gpus/nodes and without the batch
                                    -- that the scaling rule lets vary: the 1-GPU baseline shares it
  model         TEXT,
  gpu_type      TEXT,
  gpus          INTEGER NOT NULL DEFAULT 1,   -- total GPUs (or CPU ranks) of the cell
  nodes         INTEGER NOT NULL DEFAULT 1,
  batch_per_gpu INTEGER,
  global_batch  INTEGER,
  scaling       TEXT NOT NULL DEFAULT 'weak' CHECK (scaling IN ('weak','strong')),
  optimizer     TEXT,
  lr            REAL,
  seed          INTEGER,
  time_limit_s  INTEGER,            -- from resources.time
  est_gpu_hours REAL,               -- planned: gpus * time limit
  state         TEXT NOT NULL DEFAULT 'planned',  -- state of the latest attempt
  created_at    REAL NOT NULL,
  UNIQUE (experiment_id, key)
);
CREATE INDEX cells_group ON cells(experiment_id, group_key);
CREATE INDEX cells_scaling ON cells(experiment_id, scaling_key, gpus);

CREATE TABLE attempts (
  id          INTEGER PRIMARY KEY,
  cell_id     INTEGER NOT NULL REFERENCES cells(id) ON DELETE CASCADE,
  attempt     INTEGER NOT NULL,     -- 1, 2, ... (requeues and resubmits)
  backend     TEXT NOT NULL,        -- local | slurm | slurm-cli | slurm-rest
  job_id      TEXT,
  state       TEXT NOT NULL,        -- planned submitted pending running completed failed cancelled
                                    -- timeout preempted out-of-memory node-fail unknown
  reason      TEXT,                 -- failure reason: exit code and the last lines of stderr
  exit_code   INTEGER,
  submit_time REAL, start_time REAL, end_time REAL,
  nodes       TEXT,                 -- node list
  run_dir     TEXT NOT NULL,        -- runs/<experiment>/<cell-key>/attempt-<n> (absolute)
  collected_at REAL,                -- last ingest
  UNIQUE (cell_id, attempt)
);
CREATE INDEX attempts_job ON attempts(backend, job_id);

-- One row per line of metrics.jsonl (per epoch or eval). wall_s is seconds since the attempt
-- started; the views add earlier attempts' time to give one curve per cell.
CREATE TABLE epochs (
  id           INTEGER PRIMARY KEY,
  attempt_id   INTEGER NOT NULL REFERENCES attempts(id) ON DELETE CASCADE,
  line         INTEGER NOT NULL,    -- line number in metrics.jsonl (1-based)
  epoch        INTEGER, step INTEGER, wall_s REAL,
  train_loss   REAL, val_loss REAL, miou REAL, pixel_acc REAL, top1 REAL, lr REAL,
  images_per_s REAL, epoch_s REAL, data_s REAL, compute_s REAL, comm_s REAL,
  extra        TEXT,                -- JSON object of the keys not listed above (kept, not dropped)
  UNIQUE (attempt_id, line)
);

CREATE TABLE class_iou (
  epoch_id  INTEGER NOT NULL REFERENCES epochs(id) ON DELETE CASCADE,
  class     INTEGER NOT NULL,
  iou       REAL,                   -- NULL where the class was absent from prediction and truth
  PRIMARY KEY (epoch_id, class)
);

-- result.json and env.json of an attempt, kept whole plus the columns people filter on.
CREATE TABLE results (
  attempt_id   INTEGER PRIMARY KEY REFERENCES attempts(id) ON DELETE CASCADE,
  images_per_s REAL, wall_s REAL, miou REAL, pixel_acc REAL, top1 REAL, val_loss REAL,
  json         TEXT NOT NULL
);
CREATE TABLE environments (
  attempt_id   INTEGER PRIMARY KEY REFERENCES attempts(id) ON DELETE CASCADE,
  host TEXT, gpu_model TEXT, driver TEXT, cuda TEXT, cudnn TEXT, nccl TEXT,
  container_digest TEXT, git_commit TEXT,
  json         TEXT NOT NULL
);

-- ---- views (the science) ------------------------------------------------------------------
-- VIEWS-BEGIN (owned by the collect/report module; documented in README.md)
-- VIEWS-END

PRAGMA user_version = 1;
