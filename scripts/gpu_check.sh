#!/usr/bin/env bash
# GPU figures for docs/performance.md, on a machine with an NVIDIA GPU:
# the authors' convention (FP16, batch 64, ms per image after warm-up) for all
# three GENets, and the float16 layer diff of GENet_large. Writes JSON only;
# nothing here is estimated. Usage: scripts/gpu_check.sh [OUT_DIR]
set -euo pipefail
OUT=${1:-gpu_check}
PY=${PYTHON:-python}
mkdir -p "$OUT"
"$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: torch sees no CUDA GPU')"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/nvidia-smi.csv"
PADDLE_GPU=$("$PY" -c "import paddle; print(int(paddle.device.is_compiled_with_cuda()))" 2>/dev/null || echo 0)
FRAMEWORKS=(--framework torch)
[ "$PADDLE_GPU" = 1 ] && FRAMEWORKS+=(--framework paddle)
for arch in small normal large; do
  "$PY" -m parity.commands.cli bench --arch "$arch" --device gpu --dtype float16 --batch-size 64 \
    --warmup 20 --iters 100 "${FRAMEWORKS[@]}" --pipeline-workers --json "$OUT/bench_fp16_b64_$arch.json"
done
if [ "$PADDLE_GPU" = 1 ]; then
  "$PY" -m parity.commands.cli layers --random-weights --arch large --device gpu --dtype float16 --batch-size 8 \
    --summary-only --json "$OUT/layers_large_fp16_gpu.json"
else
  echo '{"not_measured": "this PaddlePaddle build has no CUDA support; the float16 layer diff needs both frameworks on the GPU"}' \
    > "$OUT/layers_large_fp16_gpu.json"
fi
echo "gpu_check: wrote $OUT/"
