#!/usr/bin/env bash
# Checkpoint format versions with the real segx-train (CPU): a checkpoint it writes now is version 2
# (the fp16 loss-scaler fields after the run tag, 0 on the CPU: "not stored"); the same checkpoint
# rewritten as version 1 (the header segx-train wrote before the loss scaler was stored: those
# fields cut, CRC recomputed) still resumes, to the same bytes as the version-2 file and as an
# uninterrupted run; a version from the future is refused with a message.
. "$(dirname "$0")/lib.sh"
if [ ! -x "$SEGX_TRAIN" ]; then skip "segx-train not built ($SEGX_TRAIN)"; done_testing; exit; fi
common=(--model cnn --dataset synthetic --batch-size 8 --train-limit 64 --eval-limit 16 --optimizer adam --lr 0.01
        --seed 4 --threads 1 --workers 1)
run() { # NAME ARGS...: log in $TEST_TMP/NAME.log, status in $rc
  local name=$1; shift
  timeout 300 "$SEGX_TRAIN" "${common[@]}" "$@" >"$TEST_TMP/$name.log" 2>&1; rc=$?
}

run full --epochs 2 --out "$TEST_TMP/full" --save-params "$TEST_TMP/full.params"
check_eq "uninterrupted 2-epoch run exits 0" 0 "$rc"
run half --epochs 1 --checkpoint-every 1 --out "$TEST_TMP/v2"
check_eq "1-epoch run with a checkpoint exits 0" 0 "$rc"

# prefix: magic[8] version:u32 header_bytes:u32; header; arrays; CRC-32 of all before it.
# Version 2's header = version 1's 368 bytes + loss_scale:f64 + good_steps:i64 + skipped_steps:i64.
out=$(python3 - "$TEST_TMP/v2/checkpoint.bin" <<'PY'
import struct, sys, zlib
b = open(sys.argv[1], 'rb').read()
magic, ver, hb = struct.unpack_from('<8sII', b, 0)
body, crc = b[:-4], struct.unpack('<I', b[-4:])[0]
assert magic == b'SEGXCKPT' and zlib.crc32(body) == crc, "bad file"
scale, good, skipped = struct.unpack_from('<dqq', b, 16 + 368)
print(f"version={ver} header_bytes={hb} loss_scale={scale:g} good={good} skipped={skipped}")
PY
)
check_eq "segx-train writes version 2, 392-byte header, no loss scaler on the CPU" \
  "version=2 header_bytes=392 loss_scale=0 good=0 skipped=0" "$out"

# the same checkpoint as version 1, and one from a future version 9
cp -r "$TEST_TMP/v2" "$TEST_TMP/v1"
cp -r "$TEST_TMP/v2" "$TEST_TMP/v9"
python3 - "$TEST_TMP/v2/checkpoint.bin" "$TEST_TMP/v1/checkpoint.bin" "$TEST_TMP/v9/checkpoint.bin" <<'PY'
import struct, sys, zlib
b = open(sys.argv[1], 'rb').read()
magic, ver, hb = struct.unpack_from('<8sII', b, 0)
def write(path, version, header_bytes):
    body = struct.pack('<8sII', magic, version, header_bytes) + b[16:16 + header_bytes] + b[16 + hb:-4]
    open(path, 'wb').write(body + struct.pack('<I', zlib.crc32(body)))
write(sys.argv[2], 1, 368)
write(sys.argv[3], 9, hb)
PY
check "the version-1 file is 24 bytes shorter" test "$(($(stat -c %s "$TEST_TMP/v2/checkpoint.bin") - 24))" = "$(stat -c %s "$TEST_TMP/v1/checkpoint.bin")"

run resume2 --epochs 2 --resume --out "$TEST_TMP/v2" --save-params "$TEST_TMP/v2.params"
check_eq "resume from version 2 exits 0" 0 "$rc"
run resume1 --epochs 2 --resume --out "$TEST_TMP/v1" --save-params "$TEST_TMP/v1.params"
check_eq "resume from version 1 exits 0" 0 "$rc"
check "version 1 resumes from epoch 2" grep -q "resuming from $TEST_TMP/v1/checkpoint.bin: epoch 2, batch 0" "$TEST_TMP/resume1.log"
check "version-1 resume == version-2 resume, bytewise" cmp "$TEST_TMP/v1.params" "$TEST_TMP/v2.params"
check "resume == uninterrupted run, bytewise" cmp "$TEST_TMP/v2.params" "$TEST_TMP/full.params"
check "the CPU does not claim a loss scale from the checkpoint" bash -c "! grep -q 'loss scale' '$TEST_TMP/resume1.log'"
run resume9 --epochs 2 --resume --out "$TEST_TMP/v9"
if [ "$rc" != 0 ] && grep -q "checkpoint version 9 (header 392 bytes); this segx-train reads versions 1 to 2" "$TEST_TMP/resume9.log"; then
  pass "a checkpoint from a newer segx-train is refused, naming the versions"
else
  fail "version 9 checkpoint" "rc=$rc" "$(tail -3 "$TEST_TMP/resume9.log")"
fi
done_testing
