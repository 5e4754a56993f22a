#!/usr/bin/env bash
# segx-train faults (issue 17): --resume with a checkpoint that exists but cannot be opened (a
# symlink loop; unreadable for the user) is an error that changes nothing in the run dir (only a
# missing checkpoint starts afresh); a batch that cannot fit in the machine's memory is refused
# before anything is allocated, naming what fits, instead of being OOM-killed; one over the job's
# --mem is warned about; the plan is not below the real peak.
. "$(dirname "$0")/lib.sh"
cd "$TEST_TMP" || exit 1
if [ ! -x "$SEGX_TRAIN" ]; then skip "segx-train is not built"; done_testing; exit $?; fi
common=(--model cnn --dataset synthetic --train-limit 64 --eval-limit 16 --batch-size 16 --threads 1 --workers 0)
t() { out=$(timeout 300 "$@" 2>&1); rc=$?; }
# state DIR: every file of the run dir with its checksum (what "nothing changed" compares)
state() { (cd "$1" && find . -type f -o -type l | sort | while read -r f; do
  if [ -L "$f" ]; then echo "$f -> $(readlink "$f")"; else echo "$f $(sha256sum <"$f" | cut -c1-16)"; fi; done); }

t "$SEGX_TRAIN" "${common[@]}" --epochs 1 --checkpoint-every 1 --out r
check_eq "1 epoch with a checkpoint: exit 0" 0 "$rc"
check "checkpoint.bin written" test -s r/checkpoint.bin
mv r/checkpoint.bin ckpt.bin

# --- a symlink loop where the checkpoint should be --------------------------------------------
ln -s checkpoint.bin r/checkpoint.bin
state r >before.txt
t "$SEGX_TRAIN" "${common[@]}" --epochs 2 --resume --out r
check_eq "--resume with a symlink loop: exit 1" 1 "$rc"
case $out in *"r/checkpoint.bin: cannot open the checkpoint to resume from: Too many levels of symbolic links"*) pass "the error names the checkpoint and the cause";;
  *) fail "the error names the checkpoint and the cause" "$out";; esac
check "nothing in the run dir changed (metrics.jsonl kept)" cmp before.txt <(state r)
rm r/checkpoint.bin

# --- a checkpoint the user cannot read ---------------------------------------------------------
AS=()
if [ "$(id -u)" = 0 ]; then
  if command -v setpriv >/dev/null; then AS=(setpriv --reuid=65534 --regid=65534 --clear-groups); else AS=(false); fi
  chmod 755 "$TEST_TMP"; chown -R 65534 r
fi
cp ckpt.bin r/checkpoint.bin; chmod 000 r/checkpoint.bin   # root's own copy: root ignores 000
state r >before.txt
if [ "${AS[0]:-}" = false ]; then
  skip "unreadable checkpoint: running as root without setpriv"
else
  t "${AS[@]}" "$SEGX_TRAIN" "${common[@]}" --epochs 2 --resume --out r
  check_eq "--resume with an unreadable checkpoint: exit 1" 1 "$rc"
  case $out in *"cannot open the checkpoint to resume from: Permission denied"*) pass "the error says permission denied";;
    *) fail "the error says permission denied" "$out";; esac
  check "nothing in the run dir changed" cmp before.txt <(state r)
fi
rm -f r/checkpoint.bin

# --- no checkpoint: a fresh start; with it back: resumes ------------------------------------------
t "$SEGX_TRAIN" "${common[@]}" --epochs 1 --resume --out fresh
check_eq "--resume without a checkpoint: exit 0 (fresh start)" 0 "$rc"
case $out in *"no checkpoint in fresh yet; starting from scratch"*) pass "it says it starts from scratch";; *) fail "it says it starts from scratch" "$out";; esac
cp ckpt.bin r/checkpoint.bin; chmod 644 r/checkpoint.bin
t "$SEGX_TRAIN" "${common[@]}" --epochs 2 --resume --out r
check_eq "--resume with the checkpoint back: exit 0" 0 "$rc"
check_eq "metrics.jsonl kept its first epoch and got the second" 2 "$(wc -l <r/metrics.jsonl)"

# --- memory ----------------------------------------------------------------------------------------
t "$SEGX_TRAIN" --batch-size 100000 --dataset synthetic --epochs 1
check_eq "--batch-size 100000: refused as bad input (exit 2), not OOM-killed" 2 "$rc"
case $out in *"--batch-size 100000 needs about"*"a batch of at most"*"fits"*) pass "it says what it needs and what fits";;
  *) fail "it says what it needs and what fits" "$out";; esac
# over what the job asked Slurm for (--mem): a warning naming what fits (a cluster that enforces
# --mem kills the job; one that does not, like the local test cluster, lets it run)
t env SLURM_MEM_PER_NODE=400 "$SEGX_TRAIN" "${common[@]}" --batch-size 512 --train-limit 512 --epochs 1
check_eq "over the job's --mem (SLURM_MEM_PER_NODE=400): batch 512 runs (exit 0)" 0 "$rc"
case $out in *"warning: --batch-size 512 needs about"*"the job asked for 400.0 MiB (the job's --mem=400M (SLURM_MEM_PER_NODE))"*"a batch of at most"*)
  pass "... with a warning naming the job's --mem and what fits";; *) fail "... with a warning naming the job's --mem and what fits" "$out";; esac
fits=$(echo "$out" | sed -n 's/.*a batch of at most \([0-9]*\) fits.*/\1/p')
if [ -n "$fits" ]; then
  t env SLURM_MEM_PER_NODE=400 "$SEGX_TRAIN" "${common[@]}" --batch-size "$fits" --train-limit $((fits * 2)) --epochs 1
  check_eq "the batch it says fits ($fits) runs" 0 "$rc"
  case $out in *warning:*needs\ about*) fail "... without a warning" "$out";; *) pass "... without a warning";; esac
fi
# the plan is an upper bound of the real peak: one run, its plan printed as a warning (the job
# "asked" for 1 MB), its peak RSS measured
peak=$(SLURM_MEM_PER_NODE=1 python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=open("peak.err", "w"))
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)' "$SEGX_TRAIN" "${common[@]}" --batch-size 256 --train-limit 1024 --epochs 1)
planned=$(sed -n 's/.*needs about \([0-9.]*\) MiB.*/\1/p' peak.err | cut -d. -f1)
if [ "${SEGX_SAN:-0}" = 1 ]; then   # ASan's shadow memory and quarantine are in the peak, not in the plan
  skip "plan vs peak RSS: not under ASan (plan ${planned:-?} MiB, peak ${peak} MiB)"
else
  check "the plan (${planned:-?} MiB) is not below the measured peak (${peak} MiB)" test "${planned:-0}" -ge "$peak"
  check "the plan (${planned:-?} MiB) is within 1.5x of the measured peak (${peak} MiB)" test "${planned:-0}" -le $((peak * 3 / 2))
fi
done_testing
