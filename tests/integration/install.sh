#!/usr/bin/env bash
# `make install` as a packager runs it (PREFIX=/usr/local DESTDIR=...), then the installed segx used
# from another directory with nothing of this checkout: it finds its templates under
# PREFIX/share/segx and segx-train beside itself, plans and runs a segx-train cell on the local
# backend; `man segx-plan` and the bash completion work from the prefix; `make uninstall` removes
# every file it installed.
. "$(dirname "$0")/lib.sh"
cd "$TEST_TMP" || exit 1
command -v help2man >/dev/null || { skip "help2man not installed (scripts/install-deps installs it)"; done_testing; exit; }
build=$(realpath --relative-to="$SEGX_ROOT" "$SEGX_BUILD")
dest=$TEST_TMP/root prefix=/usr/local
out=$(make --no-print-directory -C "$SEGX_ROOT" BUILD="$build" SAN="${SEGX_SAN:-0}" DESTDIR="$dest" PREFIX="$prefix" install 2>&1); rc=$?
check_eq "make install DESTDIR=... PREFIX=/usr/local exits 0" 0 "$rc"
[ "$rc" = 0 ] || echo "$out" | tail -10 | sed 's/^/# /'
p=$dest$prefix
for f in bin/segx bin/segx-train share/segx/templates/job.sbatch.tmpl share/segx/templates/clusters/local.json \
         share/man/man1/segx.1 share/man/man1/segx-plan.1 share/man/man1/segx-train.1 share/bash-completion/completions/segx; do
  [ -e "$p/$f" ] || { fail "installed: $f" "missing under $p"; continue; }
done
pass "installed: binaries, templates, man pages, completion"
check_eq "one man page per command segx --help lists (+ segx, segx-train)" \
  "$(( $("$p/bin/segx" --help | awk '/^commands:/ {f = 1; next} f && /^  [a-z]/ {n++} f && /^$/ {exit} END {print n}') + 2 ))" \
  "$(ls "$p/share/man/man1" | wc -l)"

# the installed segx from a directory of its own, with no SEGX_* pointing into the checkout
mkdir -p elsewhere && cd elsewhere || exit 1
cat >spec.json <<JSON
{"name": "installed",
 "trainer": {"dataset": "synthetic", "epochs": 1, "optimizer": "sgd", "lr": 0.01,
             "args": {"train-limit": 32, "in-channels": 1, "image-size": 16, "classes": 4}},
 "eval": {"limit": 16},
 "matrix": {"model": ["cnn"], "gpu_type": ["cpu"], "gpus": [1], "batch_per_gpu": [8], "seed": [1]},
 "resources": {"time": "00:10:00", "cpus_per_gpu": 1}}
JSON
clean_env=(env -u SEGX_ROOT -u SEGX_BIN -u SEGX_TEMPLATES -u SEGX_TRAIN -u SEGX_DB PATH=/usr/bin:/bin)
out=$("${clean_env[@]}" "$p/bin/segx" run spec.json --backend local --db my.db --no-report 2>&1); rc=$?
check_eq "the installed segx plans and runs a segx-train cell from another directory" 0 "$rc"
[ "$rc" = 0 ] || echo "$out" | tail -10 | sed 's/^/# /'
check_eq "the cell completed, one epoch collected" "completed|1" \
  "$(sqlite3 my.db "SELECT c.state, (SELECT count(*) FROM epochs) FROM cells c")"
check "its job script runs the installed segx-train" grep -qF "$p/bin/segx-train" runs/installed/*/attempt-1/job.sh
check "its job script came from the installed template" grep -q "SBATCH" runs/installed/*/attempt-1/job.sh

# man page and completion from the prefix
page=$(MANPATH=$p/share/man man -P cat segx-plan 2>&1)
case $page in *"segx-plan - expand a spec into cells"*"--dry-run"*) pass "man segx-plan (MANPATH=PREFIX/share/man) shows the plan command's options";;
  *) fail "man segx-plan" "$(echo "$page" | head -5)";; esac
comp() { # WORDS...: the completions bash offers for the last word
  PATH=$p/bin:/usr/bin:/bin bash -c '. "$0"; COMP_WORDS=("${@}"); COMP_CWORD=$(($# - 1)); _segx; echo "${COMPREPLY[*]}"' \
    "$p/share/bash-completion/completions/segx" "$@"
}
check_eq "completion: subcommands" "status submit" "$(comp segx s | tr ' ' '\n' | grep -E '^(status|submit)$' | sort | paste -sd' ')"
check_eq "completion: flags from the command's --help" "--db --dry-run" "$(comp segx plan --d | tr ' ' '\n' | sort | paste -sd' ')"
check_eq "completion: experiment names from the DB given by --db" installed "$(comp segx status --db my.db inst)"
check_eq "unknown subcommand: did you mean, exit 2" "2|status" \
  "$("$p/bin/segx" stauts 2>&1 >/dev/null | sed -n 's/^\t//p' | paste -sd' ' | sed 's/^/|/' | sed "s/^/$("$p/bin/segx" stauts >/dev/null 2>&1; echo $?)/")"

cd "$TEST_TMP" || exit 1
out=$(make --no-print-directory -C "$SEGX_ROOT" BUILD="$build" SAN="${SEGX_SAN:-0}" DESTDIR="$dest" PREFIX="$prefix" uninstall 2>&1); rc=$?
check_eq "make uninstall exits 0" 0 "$rc"
check_eq "make uninstall leaves no file behind" "" "$(find "$dest" -type f)"
done_testing
