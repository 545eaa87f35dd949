#!/usr/bin/env bash
# GPU figures for docs/performance.md, on a machine with an NVIDIA GPU. Nothing
# here is estimated; every figure lands in OUT_DIR as JSON.
#  - torch (any CUDA build; Paddle not needed): scripts/gpu_torch.py, TF32 pinned
#    off: FP16 batch-64 latency of all three archs (eager, channels-last,
#    torch.compile; float32 eager beside), float16 and float32 logits judged
#    against the float64 recomputation with top-1 agreement on bundled photos
#    and seeded inputs, and the float16 layer diff's torch side.
#  - Paddle, only where a CUDA build of it is installed in the same environment:
#    the same latency through `genet-parity bench` and the float16 layer diff of
#    both frameworks. Elsewhere this prints the one command to run there.
# Usage: scripts/gpu_check.sh [OUT_DIR]   (PYTHON=... to pick the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu_check}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 NVIDIA_TF32_OVERRIDE=0
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > "$OUT/nvidia-smi.csv"
cat "$OUT/nvidia-smi.csv"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())"
status=0
"$PY" scripts/gpu_torch.py --out "$OUT" || status=$?
PADDLE_GPU=$("$PY" -c "import paddle; print(int(paddle.device.is_compiled_with_cuda()))" 2>/dev/null || echo 0)
if [ "$PADDLE_GPU" = 1 ]; then
  for arch in small normal large; do
    "$PY" -m parity.commands.cli bench --arch "$arch" --device gpu --dtype float16 --batch-size 64 \
      --warmup 20 --iters 100 --pipeline-workers --json "$OUT/bench_fp16_b64_$arch.json" || status=$?
  done
  "$PY" -m parity.commands.cli layers --random-weights --arch large --device gpu --dtype float16 --batch-size 8 \
    --summary-only --json "$OUT/layers_large_fp16_gpu.json" || status=$?
else
  echo "gpu_check: no CUDA build of Paddle here; Paddle's side, where paddlepaddle-gpu is installed:"
  echo "  genet-parity bench --arch large --device gpu --dtype float16 --batch-size 64 --framework paddle"
fi
echo "gpu_check: wrote $OUT/ (exit $status)"
exit $status
