#!/usr/bin/env bash
# One-shot CUDA check of detr-rs on an NVIDIA machine (docs/performance.md, "GPU backends").
#
#   tools/cuda_check.sh build   # here: release build with --features cuda, stripped, xz'd
#                               # into .cuda_check/bins.tar.xz (git-ignored; ~20-30 MiB)
#   tools/cuda_check.sh run     # there: one command, under 10 minutes, no downloads and no
#                               # Rust toolchain; needs the NVIDIA driver, libnvrtc (CUDA or
#                               # PyTorch's nvidia-cuda-nvrtc wheel) and PyTorch with CUDA
#
# `run` does, in this order, each step under its own time limit (the rest is skipped, and
# said so, if the 570 s budget runs out):
#   1. r50 forward parity: tools/make_model_fixture.py --r50 builds the seeded r50 fixture
#      (PyTorch on the CPU, the generator whose tiny outputs are committed), then
#      `parity_r50 --backend cuda` checks every intermediate, logits and boxes (≤ 1e-4);
#   2. the r50 training step (forward, matcher, set loss with aux losses, backward, clip,
#      AdamW) at batch 2 and 8 on 800×800 images: images/s and the peak GPU memory;
#   3. PyTorch's same step on the same GPU (tools/bench_train_step.py --device cuda);
#   4. two short epochs of the main job (tiny preset, synthetic data) with `detr-train
#      --backend cuda`, with validation and COCO AP.
# Output: stdout, and $OUT/cuda_check.log when $OUT is set (the device tool's folder).
#
# Flow check without a GPU (what can run here): after `build`,
#   DETR_CHECK_BACKEND=flex DETR_CHECK_QUICK=1 tools/cuda_check.sh run
# runs every step on the CPU backend with small sizes (PyTorch on the CPU).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DIR=$ROOT/.cuda_check
BINS=(detr-train bench_train_step parity_r50)

build() {
    set -e
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}" CARGO_INCREMENTAL=0
    # cudarc (burn-cuda's driver bindings) takes the CUDA version from nvcc at build time;
    # without nvcc here, build for the CUDA 13.0 of the target machine (driver 580).
    if ! command -v nvcc >/dev/null; then
        export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13000}"
        echo "no nvcc: building for CUDA $CUDARC_CUDA_VERSION (set CUDARC_CUDA_VERSION to change)"
    fi
    cargo build --release -p detr-train -p detr-model --features cuda \
        --bin detr-train --example bench_train_step --example parity_r50
    rm -rf "$DIR/stage" && mkdir -p "$DIR/stage"
    local rel=$CARGO_TARGET_DIR/release
    cp "$rel/detr-train" "$rel/examples/bench_train_step" "$rel/examples/parity_r50" "$DIR/stage/"
    strip "${BINS[@]/#/$DIR/stage/}"
    ls -l "$DIR/stage"
    tar -C "$DIR/stage" -cf - "${BINS[@]}" | xz -9 -T2 >"$DIR/bins.tar.xz"
    rm -rf "$DIR/stage"
    local size
    size=$(stat -c %s "$DIR/bins.tar.xz")
    echo "$DIR/bins.tar.xz: $((size / 1024 / 1024)) MiB (carry .cuda_check; limit 64 MiB with the tree)"
    if ((size > 56 * 1024 * 1024)); then
        echo "error: too large to carry with the working tree" >&2
        exit 1
    fi
}

# ---------------------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------------------
BACKEND=${DETR_CHECK_BACKEND:-cuda}
QUICK=${DETR_CHECK_QUICK:-0}
BUDGET=${DETR_CHECK_BUDGET_S:-570}
START=$(date +%s)
SUMMARY=()

left() { echo $((BUDGET - ($(date +%s) - START))); }

# step NAME LIMIT_S CMD...: runs CMD under min(LIMIT_S, time left); records the outcome.
step() {
    local name=$1 limit=$2
    shift 2
    local rest
    rest=$(left)
    if ((rest < 20)); then
        echo "=== $name: SKIPPED (budget spent)"
        SUMMARY+=("$name: skipped (budget spent)")
        return 1
    fi
    ((limit > rest)) && limit=$rest
    echo
    echo "=== $name (limit ${limit}s, $(date -u +%H:%M:%S))"
    local t0=$(date +%s) rc=0
    # (through bash, so that CMD may be one of the functions exported below)
    timeout --kill-after=5 "$limit" bash -c '"$@"' _ "$@" || rc=$?
    local took=$(($(date +%s) - t0))
    if ((rc == 0)); then
        SUMMARY+=("$name: ok (${took}s)")
    elif ((rc == 124 || rc == 137)); then
        SUMMARY+=("$name: TIMED OUT after ${took}s")
    else
        SUMMARY+=("$name: FAILED (exit $rc, ${took}s)")
    fi
    return $rc
}

# peak_mem CMD...: runs CMD while sampling the GPU's used memory every 100 ms (nvidia-smi,
# whole GPU: the CUDA context and the framework's caching pools included).
peak_mem() {
    if ! command -v nvidia-smi >/dev/null; then
        "$@"
        return
    fi
    local f rc=0
    f=$(mktemp)
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$f" &
    local p=$!
    "$@" || rc=$?
    kill "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    echo "peak GPU memory used: $(sort -n "$f" | tail -1) MiB (idle before: $IDLE_MIB MiB; nvidia-smi every 100 ms)"
    rm -f "$f"
    return $rc
}

export -f peak_mem

# Directories holding libnvrtc (CUDA's runtime compiler, which cubecl loads at run time).
nvrtc_dirs() {
    {
        ldconfig -p 2>/dev/null | awk '/libnvrtc\.so/ {print $NF}'
        ls /usr/local/cuda*/lib64/libnvrtc.so* /usr/local/cuda*/targets/*/lib/libnvrtc.so* 2>/dev/null
        python3 - <<'EOF' 2>/dev/null
import glob, os, site
for d in site.getsitepackages():
    for f in glob.glob(os.path.join(d, "nvidia", "**", "libnvrtc.so*"), recursive=True):
        print(f)
EOF
    } | xargs -r -n1 dirname | awk '!seen[$0]++'
}

run() {
    local work=${DETR_CHECK_WORK:-/tmp/detr-cuda-check}
    local bin=${DETR_CHECK_BIN_DIR:-$work/bin}
    mkdir -p "$work"
    if [[ -z "${DETR_CHECK_BIN_DIR:-}" ]]; then
        [[ -f "$DIR/bins.tar.xz" ]] || { echo "error: $DIR/bins.tar.xz missing: run '$0 build' first (and carry .cuda_check)" >&2; exit 1; }
        mkdir -p "$bin" && tar -C "$bin" -xJf "$DIR/bins.tar.xz"
    fi
    local dirs
    dirs=$(nvrtc_dirs | paste -sd: -)
    export LD_LIBRARY_PATH="${dirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export RUST_BACKTRACE=0 PYTHONUNBUFFERED=1
    echo "=== machine ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
    echo "backend $BACKEND; quick $QUICK; budget ${BUDGET}s; libnvrtc from: ${dirs:-none found}"
    IDLE_MIB=n/a
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv
        IDLE_MIB=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)
    fi
    export IDLE_MIB
    python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' || true
    nproc

    local size=800 steps=3 warmup=2 epoch_steps=${DETR_CHECK_EPOCH_STEPS:-60} tdev=cuda
    if [[ $QUICK == 1 ]]; then
        size=128 steps=1 warmup=0 epoch_steps=2
    fi
    [[ $BACKEND == cuda ]] || tdev=cpu

    # 1. r50 forward parity.
    local fix=$work/r50fix
    if [[ ! -f $fix/r50_io.safetensors ]]; then
        step "r50 fixture (PyTorch, CPU)" 150 python3 tools/make_model_fixture.py --r50 "$fix" || true
    fi
    if [[ -f $fix/r50_io.safetensors ]]; then
        step "r50 forward parity on $BACKEND" 150 "$bin/parity_r50" "$fix" --backend "$BACKEND" || true
    else
        SUMMARY+=("r50 forward parity: no fixture")
    fi

    # 2./3. The r50 training step, ours then PyTorch's, at batch 2 and 8.
    for b in 2 8; do
        step "r50 training step, batch $b × ${size}², detr-rs on $BACKEND" 120 \
            peak_mem "$bin/bench_train_step" --backend "$BACKEND" --preset r50 --size "$size" \
            --batch "$b" --steps "$steps" --warmup "$warmup" || true
    done
    for b in 2 8; do
        step "r50 training step, batch $b × ${size}², PyTorch on $tdev" 90 \
            peak_mem python3 tools/bench_train_step.py --device "$tdev" --preset r50 --size "$size" \
            --batch "$b" --steps "$steps" --warmup "$warmup" || true
    done

    # 4. Two short epochs of the main job.
    local out=$work/main-job
    rm -rf "$out"
    step "main job: 2 epochs × $epoch_steps steps on $BACKEND" 200 \
        peak_mem "$bin/detr-train" --backend "$BACKEND" --dataset_file synthetic --epochs 2 \
        --max_steps_per_epoch "$epoch_steps" --num_vis_images 0 \
        --coco_path "$work/synthetic" --output_dir "$out" || true
    if [[ -f $out/log.txt ]]; then
        python3 - "$out/log.txt" <<'EOF' || true
import json, sys
for line in open(sys.argv[1]):
    l = json.loads(line)
    ap = l.get("test_coco_eval_bbox")
    val = (f"test_loss {l['test_loss']:.4f} AP {ap[0]:.4f} AP50 {ap[1]:.4f}" if ap
           else "no validation this epoch")
    print(f"epoch {l.get('epoch')}: train_loss {l.get('train_loss', float('nan')):.4f} {val} "
          f"epoch_seconds {l.get('epoch_seconds', float('nan')):.1f}")
EOF
    fi

    echo
    echo "=== summary ($(($(date +%s) - START))s)"
    printf '%s\n' "${SUMMARY[@]}"
}

case "${1:-}" in
build) build ;;
run)
    if [[ -n "${OUT:-}" ]]; then
        run 2>&1 | tee "$OUT/cuda_check.log"
    else
        run
    fi
    ;;
*)
    echo "usage: $0 build|run" >&2
    exit 2
    ;;
esac
