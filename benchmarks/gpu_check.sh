#!/usr/bin/env bash
# GPU check, for a person with a CUDA GPU: under 10 minutes in all.
#
#   1. environment report (Python, torch, CUDA, cuDNN, GPU name, compute capability, memory,
#      the mixed-precision choice of redo_lib.utils.amp_choice);
#   2. benchmarks/train_step.py, Flowers preset (128 x 128, self-attention) at the preset's
#      batch size (20, the official code's default; see TrainConfig.batch_size):
#      float32 (the "plain" path: official semantics, TF32 off), AMP and AMP + torch.compile
#      (the "fast" path), each with iterations per second and peak GPU memory;
#   3. a 1,000-iteration run of the `synthetic` preset on the GPU (redo train) and its test
#      IoU (redo evaluate --split test --json);
#   4. one row appended to the results table at the end of benchmarks/README.md.
#
# Each step has its own time limit (the total stays under 10 minutes); a step that fails,
# runs out of memory or out of time is reported as such and the others still run.
# Without a GPU it says so and exits 0 without running anything.
#
# Usage:  bash benchmarks/gpu_check.sh [OUT_DIR]      (default runs/gpu_check-DATE-TIME)
#         PYTHON=/path/to/python bash benchmarks/gpu_check.sh
#         bash benchmarks/gpu_check.sh --table-only OUT_DIR   (redo step 4 from OUT_DIR's files)
# GPU_CHECK_README=FILE writes the table there instead of benchmarks/README.md.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
README="${GPU_CHECK_README:-benchmarks/README.md}"
TOTAL_LIMIT_S=570  # every step together, leaving time for start-up and the table

table() {  # table OUT_DIR: summarise OUT_DIR's results, append a row to $README
    "$PYTHON" - "$1" "$README" <<'PY'
import json
import sys
from pathlib import Path

from redo_lib.config import get_preset

out, readme = Path(sys.argv[1]), Path(sys.argv[2])
BATCH = get_preset("flowers").train.batch_size  # the batch size the measurements ran at
HEADER = "## GPU check results (`gpu_check.sh`)"
COLUMNS = ["date", "GPU (capability)", "torch / CUDA", f"Flowers b{BATCH} float32", f"Flowers b{BATCH} AMP",
           f"Flowers b{BATCH} AMP + compile", "synthetic 1,000 it.: time, test IoU"]


def read(name):
    path = out / name
    return path.read_text() if path.is_file() else ""


def status(step):
    """'' when the step succeeded, else why not."""
    rc = read(f"{step}.rc").strip()
    if rc == "":
        return "not run"
    if rc == "0":
        return ""
    if rc in ("124", "137"):
        return "timed out"
    if "out of memory" in read(f"{step}.err").lower():
        return "out of memory"
    return f"failed (exit {rc})"


def last_json(step):
    for line in reversed(read(f"{step}.out").strip().splitlines()):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    return None


def speed(step, path):
    why = status(step)
    result = last_json(step)
    if why or result is None or path not in result:
        return why or "no result"
    r = result[path]
    peak = f", {r['peak_mem_mb'] / 1024:.1f} GiB peak" if r.get("peak_mem_mb") else ""
    amp = f" ({r['amp']})" if r.get("amp") not in (None, "off") else ""
    return f"{r['it_per_s']:.2f} it/s{amp}{peak}"


env = json.loads(read("env.json") or "{}")
synthetic = status("synthetic_train") or status("synthetic_eval")
if not synthetic:
    evaluation = last_json("synthetic_eval") or {}
    seconds = read("synthetic_train.seconds").strip() or "?"
    synthetic = f"{seconds} s, IoU {evaluation['iou']:.3f}" if "iou" in evaluation else "no result"
row = [
    env.get("date", "?"),
    f"{env.get('gpu', '?')} ({env.get('capability', '?')})",
    f"{env.get('torch', '?')} / {env.get('cuda', '?')}",
    speed("flowers_float32", "plain"),
    speed("flowers_amp", "fast"),
    speed("flowers_amp_compile", "fast"),
    synthetic,
]
line = "| " + " | ".join(str(cell).replace("|", "/") for cell in row) + " |"
print("\n".join(["", HEADER, "", "| " + " | ".join(COLUMNS) + " |", line]))

text = readme.read_text() if readme.is_file() else ""
lines = text.splitlines()
if HEADER in lines:
    # after the last row of the table under the header
    i = lines.index(HEADER) + 1
    while i < len(lines) and not lines[i].startswith("|"):
        i += 1
    while i < len(lines) and lines[i].startswith("|"):
        i += 1
    lines.insert(i, line)
    text = "\n".join(lines) + "\n"
else:
    section = [
        HEADER, "",
        "Rows appended by `bash benchmarks/gpu_check.sh` (one per run). Flowers: "
        f"`train_step.py --preset flowers --batch-size {BATCH}` (the preset's); float32 is the plain path (official "
        "semantics, TF32 off), AMP and AMP + compile the fast path (with channels-last); peak "
        "memory is `torch.cuda.max_memory_allocated`. Synthetic: `redo train --preset synthetic-flat "
        "--steps 1000` on the GPU, then `redo evaluate --split test` of its best.pt.", "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
        line,
    ]
    text = text.rstrip("\n") + ("\n\n" if text.strip() else "") + "\n".join(section) + "\n"
readme.write_text(text)
print(f"\nappended to {readme}")
PY
}

if [ "${1:-}" = "--table-only" ]; then
    [ -n "${2:-}" ] || { echo "usage: $0 --table-only OUT_DIR" >&2; exit 2; }
    table "$2"
    exit $?
fi

if ! has_gpu=$("$PYTHON" -c 'import torch; print(torch.cuda.is_available())' 2>/dev/null); then
    echo "gpu_check: cannot import torch with $PYTHON (set PYTHON=...)" >&2
    exit 1
fi
if [ "$(printf '%s\n' "$has_gpu" | tail -n 1)" != "True" ]; then
    echo "gpu_check: no GPU here (torch.cuda.is_available() is False); nothing was run and $README is unchanged."
    exit 0
fi

OUT="${1:-runs/gpu_check-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT" || exit 1
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
deadline=$(( $(date +%s) + TOTAL_LIMIT_S ))

run_step() {  # run_step NAME LIMIT_S COMMAND...: stdout, stderr and exit status into $OUT/NAME.*
    local name=$1 limit=$2 left
    shift 2
    left=$(( deadline - $(date +%s) ))
    if [ "$left" -lt "$limit" ]; then limit=$left; fi
    if [ "$limit" -le 5 ]; then
        echo "== $name: skipped (the 10-minute budget is spent)"
        echo 124 > "$OUT/$name.rc"
        return 124
    fi
    echo "== $name (at most ${limit} s): $*"
    local start rc
    start=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.out" 2> "$OUT/$name.err"
    rc=$?
    echo "$rc" > "$OUT/$name.rc"
    echo $(( $(date +%s) - start )) > "$OUT/$name.seconds"
    if [ "$rc" -ne 0 ]; then
        echo "   exit status $rc; last lines of $OUT/$name.err:"
        tail -n 5 "$OUT/$name.err" | sed 's/^/   | /'
    else
        tail -n 1 "$OUT/$name.out" | cut -c1-300 | sed 's/^/   /'
    fi
    return "$rc"
}

echo "== environment"
"$PYTHON" - "$OUT/env.json" <<'PY'
import json
import platform
import sys
import time

import torch
import torchvision

from redo_lib.utils import amp_choice

device = torch.device("cuda")
props = torch.cuda.get_device_properties(device)
major, minor = torch.cuda.get_device_capability(device)
choice = amp_choice(device)
env = {
    "date": time.strftime("%Y-%m-%d"),
    "python": platform.python_version(),
    "torch": torch.__version__,
    "torchvision": torchvision.__version__,
    "cuda": torch.version.cuda,
    "cudnn": torch.backends.cudnn.version(),
    "gpu": torch.cuda.get_device_name(device),
    "gpus": torch.cuda.device_count(),
    "capability": f"{major}.{minor}",
    "memory_gib": round(props.total_memory / 2**30, 1),
    "amp": f"{str(choice.dtype).replace('torch.', '')}{' + GradScaler' if choice.use_scaler else ''}",
    "cpu": platform.processor() or platform.machine(),
}
for key, value in env.items():
    print(f"  {key}: {value}")
with open(sys.argv[1], "w") as handle:
    json.dump(env, handle)
PY
if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/  nvidia-smi: /'
fi

FLOWERS_BATCH=$("$PYTHON" -c 'from redo_lib.config import get_preset; print(get_preset("flowers").train.batch_size)')
BENCH=("$PYTHON" benchmarks/train_step.py --preset flowers --batch-size "$FLOWERS_BATCH" --device cuda --json)
run_step flowers_float32 100 "${BENCH[@]}" --paths plain --steps 10 --warmup 2
run_step flowers_amp 60 "${BENCH[@]}" --paths fast --steps 20 --warmup 3
run_step flowers_amp_compile 180 "${BENCH[@]}" --paths fast --compile --steps 20 --warmup 5
run_step synthetic_train 180 "$PYTHON" -m redo_lib train --preset synthetic-flat --steps 1000 \
    --out "$OUT/synthetic" --device cuda --quiet
if [ -f "$OUT/synthetic/best.pt" ]; then
    run_step synthetic_eval 45 "$PYTHON" -m redo_lib evaluate --checkpoint "$OUT/synthetic/best.pt" \
        --split test --json --device cuda
else
    echo "== synthetic_eval: skipped (no $OUT/synthetic/best.pt)"
fi

table "$OUT"
echo "files: $OUT"
