-- segx results database (SQLite). This file is a PUBLIC interface: users query it with sqlite3.
-- Version: PRAGMA user_version (set at the end; still 1). Changes so far are additive and made on
-- open by db/db.c (bring_up_to_date: a missing column or table is added, a view whose text differs
-- from the one below is replaced); a change that cannot be made that way needs a bumped
-- user_version and its step there. Never edit a released table in place.
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
  collected_at REAL,                -- last ingest that found changed files
  ingest_sig  TEXT,                 -- size+mtime of the run dir's files at that ingest (collect
                                    -- skips an attempt whose files still match)
  last_epoch  INTEGER,              -- epoch of the last metrics line collect stored (NULL: none, or
                                    -- collected before this column: status looks it up in epochs)
  run_s       REAL,                 -- seconds the job ran, summed over its runs (RUN_DIR/runs.tsv,
                                    -- one line per run; a requeued Slurm job runs several times
                                    -- and Slurm keeps only the last run's StartTime); NULL if absent
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

-- Targets for time-to-target, from the spec's eval.targets (filled by segx collect): a metric
-- "reaches" its target at the first point of the stitched curve with value >= target (miou,
-- pixel_acc, top1) or <= target (val_loss, train_loss).
CREATE TABLE targets (
  experiment_id INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
  metric        TEXT NOT NULL CHECK (metric IN ('miou','pixel_acc','top1','val_loss','train_loss')),
  value         REAL NOT NULL,
  PRIMARY KEY (experiment_id, metric)
);

-- The eval job of an attempt (spec eval.job): submitted by segx submit right after the train
-- job with dependency afterok:<train job>, polled by segx status, cancelled with the train job
-- by segx cancel; segx collect settles its state from RUN_DIR/eval_exit_code and stores
-- RUN_DIR/eval.json (the evaluation of the final checkpoint on the test split).
CREATE TABLE eval_jobs (
  attempt_id   INTEGER PRIMARY KEY REFERENCES attempts(id) ON DELETE CASCADE,
  backend      TEXT NOT NULL,
  job_id       TEXT,
  state        TEXT NOT NULL,       -- as attempts.state; cancelled with reason 'dependency failed ...'
                                    -- when the train job did not end with exit 0
  reason       TEXT,
  exit_code    INTEGER,
  submit_time  REAL, start_time REAL, end_time REAL,
  nodes        TEXT,
  miou REAL, pixel_acc REAL, top1 REAL, loss REAL,   -- eval.json (segx collect)
  images INTEGER, seconds REAL, images_per_s REAL,
  json         TEXT,                -- eval.json whole; NULL until collected
  collected_at REAL
);

-- traces: one row per rank of an attempt that segx-train traced (--profile; Chrome trace format),
--   filled by segx collect (orchestrator/collect_trace.c): path (the rank's file: the cell's profile
--   path, or RUN_DIR/trace.json; rank r > 0 wrote PATH.rank<r>), steps (training steps traced), the
--   seconds of each phase summed over the run (data_s: waiting for the loader; forward_s,
--   backward_s, comm_s: gradient allreduce; optimizer_s; eval_s; other_s: phases with other names),
--   ops_s (time on the ops lane: the model's ops inside forward/backward), size and mtime (a file
--   that did not change is not read again).
CREATE TABLE traces (
  attempt_id   INTEGER NOT NULL REFERENCES attempts(id) ON DELETE CASCADE,
  rank         INTEGER NOT NULL,
  path         TEXT NOT NULL,
  steps        INTEGER,
  data_s REAL, forward_s REAL, backward_s REAL, comm_s REAL, optimizer_s REAL, eval_s REAL, other_s REAL,
  ops_s        REAL,
  size INTEGER, mtime REAL, collected_at REAL,
  PRIMARY KEY (attempt_id, rank)
);
-- trace_ops: per rank and op name (conv2d_forward, batchnorm_relu_backward, ...): calls and seconds.
CREATE TABLE trace_ops (
  attempt_id   INTEGER NOT NULL,
  rank         INTEGER NOT NULL,
  op           TEXT NOT NULL,
  calls        INTEGER NOT NULL,
  total_s      REAL NOT NULL,
  PRIMARY KEY (attempt_id, rank, op),
  FOREIGN KEY (attempt_id, rank) REFERENCES traces(attempt_id, rank) ON DELETE CASCADE
);

-- ---- views (the science) ------------------------------------------------------------------
-- VIEWS-BEGIN (owned by the collect/report module; documented in README.md)
-- Conventions: one row per attempt / cell / cell group / scaling group; NULL where there is no
-- data (never 0). Standard deviations are sample std (n-1), NULL for n < 2.

-- attempt_times: how long each attempt ran and where it starts on its cell's clock.
--   duration_s = run_s (the job's runs summed, from runs.tsv) once the attempt has ended,
--   else end_time - start_time when the backend knew both, else result.json's wall_s,
--   else the wall_s of the attempt's last metrics line. offset_s = summed duration_s of the
--   cell's earlier attempts, so a resumed run continues its cell's curve. gpu_hours = duration_s
--   * cells.gpus / 3600 (CPU ranks count as GPUs for the local backend).
CREATE VIEW attempt_times AS
SELECT d.*, d.duration_s * d.gpus / 3600.0 AS gpu_hours,
       COALESCE(SUM(d.duration_s) OVER (PARTITION BY d.cell_id ORDER BY d.attempt
                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS offset_s
FROM (SELECT a.id AS attempt_id, a.cell_id, a.attempt, a.state, c.gpus,
             (SELECT COUNT(*) FROM epochs e WHERE e.attempt_id = a.id) AS n_lines,
             (SELECT MAX(e.line) FROM epochs e WHERE e.attempt_id = a.id) AS last_line,
             CASE WHEN a.run_s IS NOT NULL AND a.state NOT IN ('submitted', 'pending', 'running') THEN a.run_s
                  WHEN a.end_time >= a.start_time THEN a.end_time - a.start_time
                  ELSE COALESCE(r.wall_s, (SELECT e.wall_s FROM epochs e WHERE e.attempt_id = a.id
                                           AND e.wall_s IS NOT NULL ORDER BY e.line DESC LIMIT 1))
             END AS duration_s
      FROM attempts a JOIN cells c ON c.id = a.cell_id LEFT JOIN results r ON r.attempt_id = a.id) d;

-- cell_curve: every metrics line of a cell, attempts stitched into one curve.
--   cell_wall_s = offset_s of the attempt + the line's wall_s.
CREATE VIEW cell_curve AS
SELECT c.experiment_id, t.cell_id, t.attempt, e.attempt_id, e.id AS epoch_id, e.line, e.epoch, e.step,
       e.wall_s, t.offset_s + e.wall_s AS cell_wall_s,
       e.train_loss, e.val_loss, e.miou, e.pixel_acc, e.top1, e.lr,
       e.images_per_s, e.epoch_s, e.data_s, e.compute_s, e.comm_s, e.extra
FROM attempt_times t JOIN epochs e ON e.attempt_id = t.attempt_id JOIN cells c ON c.id = t.cell_id;

-- attempt_steady: steady-state throughput of an attempt. The first line of an attempt that
--   reports images_per_s (or epoch_s) is warm-up (allocation, autotuning, cold caches) and is
--   left out when the attempt has more such lines. Sums and counts, so cells can pool attempts.
CREATE VIEW attempt_steady AS
SELECT g.attempt_id,
       CASE WHEN g.ips_n > 1 THEN g.ips_sum - (SELECT e.images_per_s FROM epochs e WHERE e.attempt_id = g.attempt_id
            AND e.images_per_s IS NOT NULL ORDER BY e.line LIMIT 1) ELSE g.ips_sum END AS ips_sum,
       CASE WHEN g.ips_n > 1 THEN g.ips_n - 1 ELSE g.ips_n END AS ips_n,
       CASE WHEN g.eps_n > 1 THEN g.eps_sum - (SELECT e.epoch_s FROM epochs e WHERE e.attempt_id = g.attempt_id
            AND e.epoch_s IS NOT NULL ORDER BY e.line LIMIT 1) ELSE g.eps_sum END AS eps_sum,
       CASE WHEN g.eps_n > 1 THEN g.eps_n - 1 ELSE g.eps_n END AS eps_n
FROM (SELECT attempt_id, SUM(images_per_s) AS ips_sum, COUNT(images_per_s) AS ips_n,
             SUM(epoch_s) AS eps_sum, COUNT(epoch_s) AS eps_n
      FROM epochs GROUP BY attempt_id) g;

-- cell_throughput: steady-state images_per_s and epoch_s of a cell, pooled over its attempts
--   (attempt_steady); the lean input of the scaling view.
CREATE VIEW cell_throughput AS
SELECT a.cell_id, SUM(st.ips_sum) / SUM(st.ips_n) AS images_per_s, SUM(st.eps_sum) / SUM(st.eps_n) AS epoch_s
FROM attempts a JOIN attempt_steady st ON st.attempt_id = a.id
GROUP BY a.cell_id;

-- cell_metrics: one row per cell with its final metrics.
--   epoch, step, wall_s: the cell's last metrics line (latest attempt with lines, its last line);
--   wall_s is on the stitched clock. miou ... train_loss: the last non-NULL value of each metric
--   on the stitched curve. images_per_s, epoch_s: steady-state means over all attempts.
--   gpu_hours: sum over attempts (attempt_times).
CREATE VIEW cell_metrics AS
WITH t AS MATERIALIZED (SELECT * FROM attempt_times),
s AS (SELECT cell_id, COUNT(*) AS attempts, SUM(n_lines) AS n_lines, SUM(gpu_hours) AS gpu_hours
      FROM t GROUP BY cell_id),
l AS (SELECT cell_id, attempt_id, offset_s, last_line,
             ROW_NUMBER() OVER (PARTITION BY cell_id ORDER BY attempt DESC) AS rn
      FROM t WHERE n_lines > 0)
SELECT c.experiment_id, c.id AS cell_id, c.key, c.group_key, c.scaling_key, c.model, c.gpu_type,
       c.gpus, c.nodes, c.batch_per_gpu, c.global_batch, c.scaling, c.optimizer, c.lr, c.seed, c.state,
       COALESCE(s.attempts, 0) AS attempts, COALESCE(s.n_lines, 0) AS n_lines,
       le.epoch, le.step, l.offset_s + le.wall_s AS wall_s,
       (SELECT e.miou FROM attempts a JOIN epochs e ON e.attempt_id = a.id WHERE a.cell_id = c.id
          AND e.miou IS NOT NULL ORDER BY a.attempt DESC, e.line DESC LIMIT 1) AS miou,
       (SELECT e.pixel_acc FROM attempts a JOIN epochs e ON e.attempt_id = a.id WHERE a.cell_id = c.id
          AND e.pixel_acc IS NOT NULL ORDER BY a.attempt DESC, e.line DESC LIMIT 1) AS pixel_acc,
       (SELECT e.top1 FROM attempts a JOIN epochs e ON e.attempt_id = a.id WHERE a.cell_id = c.id
          AND e.top1 IS NOT NULL ORDER BY a.attempt DESC, e.line DESC LIMIT 1) AS top1,
       (SELECT e.val_loss FROM attempts a JOIN epochs e ON e.attempt_id = a.id WHERE a.cell_id = c.id
          AND e.val_loss IS NOT NULL ORDER BY a.attempt DESC, e.line DESC LIMIT 1) AS val_loss,
       (SELECT e.train_loss FROM attempts a JOIN epochs e ON e.attempt_id = a.id WHERE a.cell_id = c.id
          AND e.train_loss IS NOT NULL ORDER BY a.attempt DESC, e.line DESC LIMIT 1) AS train_loss,
       tp.images_per_s, tp.epoch_s, s.gpu_hours, c.est_gpu_hours
FROM cells c
LEFT JOIN s ON s.cell_id = c.id
LEFT JOIN cell_throughput tp ON tp.cell_id = c.id
LEFT JOIN l ON l.cell_id = c.id AND l.rn = 1
LEFT JOIN epochs le ON le.attempt_id = l.attempt_id AND le.line = l.last_line;

-- group_metrics: cells that differ only by seed (same group_key), pooled.
--   cells = cells planned; n = cells with metrics lines; X_mean, X_std (sample, two-pass),
--   X_n over the cells' final values (cell_metrics). gpu_hours and est_gpu_hours are sums.
CREATE VIEW group_metrics AS
WITH cm AS MATERIALIZED (SELECT * FROM cell_metrics)
SELECT experiment_id, group_key, MIN(scaling_key) AS scaling_key, MIN(model) AS model,
       MIN(gpu_type) AS gpu_type, MIN(gpus) AS gpus, MIN(nodes) AS nodes,
       MIN(batch_per_gpu) AS batch_per_gpu, MIN(global_batch) AS global_batch,
       MIN(scaling) AS scaling, MIN(optimizer) AS optimizer, MIN(lr) AS lr,
       COUNT(*) AS cells, COUNT(CASE WHEN n_lines > 0 THEN 1 END) AS n,
       COUNT(CASE WHEN state = 'completed' THEN 1 END) AS completed,
       miou_mean, sqrt(SUM((miou - miou_mean) * (miou - miou_mean)) / (COUNT(miou) - 1)) AS miou_std, COUNT(miou) AS miou_n,
       pixel_acc_mean, sqrt(SUM((pixel_acc - pixel_acc_mean) * (pixel_acc - pixel_acc_mean)) / (COUNT(pixel_acc) - 1)) AS pixel_acc_std, COUNT(pixel_acc) AS pixel_acc_n,
       top1_mean, sqrt(SUM((top1 - top1_mean) * (top1 - top1_mean)) / (COUNT(top1) - 1)) AS top1_std, COUNT(top1) AS top1_n,
       val_loss_mean, sqrt(SUM((val_loss - val_loss_mean) * (val_loss - val_loss_mean)) / (COUNT(val_loss) - 1)) AS val_loss_std, COUNT(val_loss) AS val_loss_n,
       train_loss_mean, sqrt(SUM((train_loss - train_loss_mean) * (train_loss - train_loss_mean)) / (COUNT(train_loss) - 1)) AS train_loss_std, COUNT(train_loss) AS train_loss_n,
       images_per_s_mean, sqrt(SUM((images_per_s - images_per_s_mean) * (images_per_s - images_per_s_mean)) / (COUNT(images_per_s) - 1)) AS images_per_s_std, COUNT(images_per_s) AS images_per_s_n,
       epoch_s_mean, sqrt(SUM((epoch_s - epoch_s_mean) * (epoch_s - epoch_s_mean)) / (COUNT(epoch_s) - 1)) AS epoch_s_std, COUNT(epoch_s) AS epoch_s_n,
       wall_s_mean, sqrt(SUM((wall_s - wall_s_mean) * (wall_s - wall_s_mean)) / (COUNT(wall_s) - 1)) AS wall_s_std, COUNT(wall_s) AS wall_s_n,
       SUM(attempts) AS attempts, SUM(gpu_hours) AS gpu_hours, SUM(est_gpu_hours) AS est_gpu_hours
FROM (SELECT cm.*,
         AVG(miou) OVER w AS miou_mean,
         AVG(pixel_acc) OVER w AS pixel_acc_mean,
         AVG(top1) OVER w AS top1_mean,
         AVG(val_loss) OVER w AS val_loss_mean,
         AVG(train_loss) OVER w AS train_loss_mean,
         AVG(images_per_s) OVER w AS images_per_s_mean,
         AVG(epoch_s) OVER w AS epoch_s_mean,
         AVG(wall_s) OVER w AS wall_s_mean
      FROM cm WINDOW w AS (PARTITION BY experiment_id, group_key))
GROUP BY experiment_id, group_key;

-- scaling: each cell group against the 1-GPU group of the same scaling_key in the same
--   experiment (same model, GPU type and batch rule; weak keeps batch_per_gpu, strong keeps
--   global_batch, weak-data keeps batch_per_gpu and grows the training set, train_limit x gpus;
--   the column scaling says which). images_per_s and epoch_s: means over the
--   group's seeds of cell_throughput (n = cells with data). From throughput: speedup_throughput
--   = images_per_s / base_images_per_s; from time per epoch: speedup_time = base_epoch_s /
--   epoch_s (weak-data: gpus x base_epoch_s / epoch_s, as an epoch holds gpus x the samples);
--   efficiency_* = speedup_* / gpus. NULL where there is no 1-GPU group with data; if
--   several 1-GPU groups share a scaling_key, the base is their mean (base_groups says how many).
CREATE VIEW scaling AS
WITH g AS (
  SELECT c.experiment_id, c.group_key, MIN(c.scaling_key) AS scaling_key,
         MIN(COALESCE(json_extract(c.params, '$.scaling'), c.scaling)) AS scaling,   -- weak, strong, weak-data
         MIN(c.model) AS model, MIN(c.gpu_type) AS gpu_type, MIN(c.gpus) AS gpus, MIN(c.nodes) AS nodes,
         MIN(c.batch_per_gpu) AS batch_per_gpu, MIN(c.global_batch) AS global_batch,
         COUNT(COALESCE(t.images_per_s, t.epoch_s)) AS n,
         AVG(t.images_per_s) AS images_per_s, AVG(t.epoch_s) AS epoch_s
  FROM cells c LEFT JOIN cell_throughput t ON t.cell_id = c.id
  GROUP BY c.experiment_id, c.group_key)
SELECT experiment_id, scaling_key, group_key, scaling, model, gpu_type, gpus, nodes, batch_per_gpu, global_batch, n,
       images_per_s, epoch_s, base_groups, base_images_per_s, base_epoch_s,
       images_per_s / base_images_per_s AS speedup_throughput,
       images_per_s / base_images_per_s / gpus AS efficiency_throughput,
       -- weak-data: an epoch holds gpus x the samples, so the ideal epoch time is the baseline's
       CASE WHEN scaling = 'weak-data' THEN gpus * base_epoch_s / epoch_s ELSE base_epoch_s / epoch_s END AS speedup_time,
       CASE WHEN scaling = 'weak-data' THEN base_epoch_s / epoch_s ELSE base_epoch_s / epoch_s / gpus END AS efficiency_time
FROM (SELECT g.*, COUNT(CASE WHEN g.gpus = 1 AND g.n > 0 THEN 1 END) OVER w AS base_groups,
             AVG(CASE WHEN g.gpus = 1 THEN g.images_per_s END) OVER w AS base_images_per_s,
             AVG(CASE WHEN g.gpus = 1 THEN g.epoch_s END) OVER w AS base_epoch_s
      FROM g WINDOW w AS (PARTITION BY g.experiment_id, g.scaling_key));

-- time_to_target: per cell and target (targets table), the first stitched wall-clock second
--   (cell_wall_s) at which the metric reached the target: the earliest over the cell's attempts
--   of offset_s + the attempt's first wall_s that reached it. NULL when it never did. segx report
--   --target METRIC=VALUE runs the same query with its own target.
CREATE VIEW time_to_target AS
WITH at AS MATERIALIZED (SELECT attempt_id, cell_id, offset_s FROM attempt_times),
r AS (SELECT c.experiment_id, c.id AS cell_id, c.key, c.group_key, t.metric, t.value AS target,
             at.offset_s + (SELECT MIN(e.wall_s) FROM epochs e WHERE e.attempt_id = at.attempt_id
               AND CASE t.metric WHEN 'miou' THEN e.miou >= t.value
                                 WHEN 'pixel_acc' THEN e.pixel_acc >= t.value
                                 WHEN 'top1' THEN e.top1 >= t.value
                                 WHEN 'val_loss' THEN e.val_loss <= t.value
                                 WHEN 'train_loss' THEN e.train_loss <= t.value END) AS wall_s
      FROM targets t JOIN cells c ON c.experiment_id = t.experiment_id LEFT JOIN at ON at.cell_id = c.id)
SELECT experiment_id, cell_id, MIN(key) AS key, MIN(group_key) AS group_key, metric, MIN(target) AS target,
       MIN(wall_s) AS wall_s
FROM r GROUP BY experiment_id, cell_id, metric;

-- group_time_to_target: per cell group and target: cells with data (n), how many reached the
--   target, and mean / std (sample) of the time over the cells that reached it.
CREATE VIEW group_time_to_target AS
WITH tt AS MATERIALIZED (SELECT * FROM time_to_target),
m AS (SELECT experiment_id, group_key, metric, AVG(wall_s) AS mean_s FROM tt GROUP BY 1, 2, 3)
SELECT tt.experiment_id, tt.group_key, tt.metric, MIN(tt.target) AS target, COUNT(*) AS cells,
       COUNT(tt.wall_s) AS reached, m.mean_s AS wall_s_mean,
       sqrt(SUM((tt.wall_s - m.mean_s) * (tt.wall_s - m.mean_s)) / (COUNT(tt.wall_s) - 1)) AS wall_s_std,
       MIN(tt.wall_s) AS wall_s_min
FROM tt JOIN m ON m.experiment_id = tt.experiment_id AND m.group_key = tt.group_key AND m.metric = tt.metric
GROUP BY tt.experiment_id, tt.group_key, tt.metric;
-- attempt_phases: per traced attempt, the mean over its ranks of each phase's seconds (traces),
--   and per training step (ms_per_step_*), with the cell's gpus: "where did the time go per GPU
--   count" is SELECT gpus, avg(data_s), avg(comm_s) ... FROM attempt_phases GROUP BY gpus.
CREATE VIEW attempt_phases AS
SELECT t.attempt_id, a.cell_id, c.experiment_id, c.model, c.gpu_type, c.gpus, c.batch_per_gpu, COUNT(*) AS ranks,
       MAX(t.steps) AS steps, AVG(t.data_s) AS data_s, AVG(t.forward_s) AS forward_s, AVG(t.backward_s) AS backward_s,
       AVG(t.comm_s) AS comm_s, AVG(t.optimizer_s) AS optimizer_s, AVG(t.eval_s) AS eval_s, AVG(t.other_s) AS other_s,
       AVG(t.data_s + t.forward_s + t.backward_s + t.comm_s + t.optimizer_s) AS train_s,
       1000 * AVG(t.data_s) / NULLIF(MAX(t.steps), 0) AS ms_per_step_data,
       1000 * AVG(t.forward_s + t.backward_s) / NULLIF(MAX(t.steps), 0) AS ms_per_step_compute,
       1000 * AVG(t.comm_s) / NULLIF(MAX(t.steps), 0) AS ms_per_step_comm,
       1000 * AVG(t.optimizer_s) / NULLIF(MAX(t.steps), 0) AS ms_per_step_optimizer
FROM traces t JOIN attempts a ON a.id = t.attempt_id JOIN cells c ON c.id = a.cell_id
GROUP BY t.attempt_id;
-- VIEWS-END

PRAGMA user_version = 1;
