# Sourced by tests/integration/slurm_*.sh (not a test itself): starts a private local Slurm cluster
# (slurm/local-cluster) in $TEST_TMP on random ports, stops and wipes it on exit.
# After `slurm_cluster_start`, SLURM_CONF points at it; when it cannot start, the caller skips.
slurm_cluster_start() {
  export SEGX_SLURM_DIR=$TEST_TMP/slurm
  export SEGX_SLURM_PORT=$((24000 + (RANDOM % 800) * 10))
  export SLURM_CONF=$SEGX_SLURM_DIR/etc/slurm.conf
  SLURM_CLUSTER_LOG=$TEST_TMP/local-cluster.log
  trap 'slurm_cluster_stop; rm -rf "$TEST_TMP"' EXIT
  "$SEGX_ROOT/slurm/local-cluster" start >"$SLURM_CLUSTER_LOG" 2>&1
}
slurm_cluster_stop() {
  "$SEGX_ROOT/slurm/local-cluster" wipe >/dev/null 2>&1
}
# skip_all REASON: prints one skipped test and ends the script successfully
skip_all() { skip "$1"; done_testing; exit 0; }
