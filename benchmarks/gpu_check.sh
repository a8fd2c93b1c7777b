#!/usr/bin/env bash
# The GPU check: one call, a few minutes, on a machine lent with an NVIDIA GPU (torch with CUDA installed
# system-wide, no network, maybe no TensorRT), from a fresh copy of the repository:
#
#   bash benchmarks/gpu_check.sh OUT_DIR [MODEL.pt]      # --dry-run first: print the steps, run nothing
#
# 1. prints the environment (nvidia-smi, Python, torch and CUDA, the runtimes that import) into
#    OUT_DIR/environment.txt;
# 2. `perception run` on the highway clip with the Ultralytics backend on CUDA in half precision
#    (detector.ultralytics_device, detector.precision: fp16), outputs in OUT_DIR/run;
# 3. `perception bench` of the same (pipeline, detector alone, sequential, Ultralytics' own `track`) into
#    OUT_DIR/bench_ultralytics_cuda/bench.json;
# 4. where `tensorrt` and `pycuda` import: builds an FP16 plan of YOLOX-Nano 384x640 and benches the
#    TensorRT backend into OUT_DIR/bench_tensorrt/bench.json.
#
# No repository venv is needed: the package runs from the checkout (PYTHONPATH), with the Python that has
# torch (.venv's if it has CUDA torch, else python3). What it lacks is named, with the offline way to add it
# (pip install --no-index --find-links $PERCEPTION_WHEELS). MODEL.pt: a trained Ultralytics model; without one
# the first of yolo11n.pt / yolov8n.pt found in Ultralytics' weights folder or here, else YOLOv8n built from
# Ultralytics' own yaml with untrained weights (it finds nothing: FPS then measure the compute, not the
# tracking of real objects; said in the output). Without a GPU it says so and runs the same steps on the
# CPU, shorter, then exits 0 (a check of the script itself).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

DRY=0
ARGS=()
for a in "$@"; do
  if [ "$a" = "--dry-run" ]; then DRY=1; else ARGS+=("$a"); fi
done
if [ ${#ARGS[@]} -lt 1 ]; then
  echo "usage: bash benchmarks/gpu_check.sh OUT_DIR [MODEL.pt] [--dry-run]" >&2
  exit 2
fi
OUT=$(mkdir -p "${ARGS[0]}" && cd "${ARGS[0]}" && pwd)
MODEL=${ARGS[1]:-}
START=$(date +%s)

say() { echo "gpu_check: $*" | tee -a "$OUT/gpu_check.log" >&2; }
run() {  # run a step with a time limit, its output kept in OUT/<name>.log; a failing step is reported, not fatal
  local name=$1 limit=$2
  shift 2
  say "$name: $*"
  if [ "$DRY" = 1 ]; then return 0; fi
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 15 "$OUT/$name.log" >&2
  if [ $rc -ne 0 ]; then say "$name FAILED (exit $rc, see $OUT/$name.log)"; FAILED+=("$name"); fi
  return 0
}
FAILED=()

# ---------------------------------------------------------------- Python, packages
PY=""
for cand in "$REPO/.venv/bin/python" python3 python; do
  if command -v "$cand" >/dev/null 2>&1 && "$cand" -c "import torch" >/dev/null 2>&1; then
    if [ -z "$PY" ] || "$cand" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
      PY=$(command -v "$cand")
      "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null && break
    fi
  fi
done
if [ -z "$PY" ]; then
  say "no Python with torch found (tried .venv/bin/python, python3, python): install torch first"
  exit 3
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PERCEPTION_CACHE_DIR="$OUT/cache"
export YOLO_OFFLINE=1

missing=$("$PY" - <<'EOF'
import importlib
need = ["numpy", "cv2", "yaml", "pydantic", "scipy", "tqdm", "torch", "ultralytics"]
print(" ".join(m for m in need if importlib.util.find_spec(m) is None))
EOF
)
if [ -n "$missing" ] && [ -n "${PERCEPTION_WHEELS:-}" ]; then
  say "installing from local wheels in $PERCEPTION_WHEELS: $missing"
  declare -A PIPNAME=([cv2]=opencv-python [yaml]=pyyaml)
  pkgs=()
  for m in $missing; do pkgs+=("${PIPNAME[$m]:-$m}"); done
  "$PY" -m pip install -q --no-index --find-links "$PERCEPTION_WHEELS" "${pkgs[@]}" 2>&1 | tail -3 >&2
  missing=$("$PY" -c "import importlib.util as u; print(' '.join(m for m in '$missing'.split() if u.find_spec(m) is None))")
fi
if [ -n "$missing" ]; then
  say "missing on this machine: $missing (no network here: pip install --no-index --find-links DIR <package>," \
    "or set PERCEPTION_WHEELS=DIR to a folder of wheels and run again)"
  exit 3
fi
if ! "$PY" -c "import perception.cli.main, perception.bench, perception.detect.runtimes.ultralytics" 2>"$OUT/import.log"; then
  say "the package does not import with $PY: $(tail -n 1 "$OUT/import.log")"
  exit 3
fi

# ---------------------------------------------------------------- assets, GPU
ASSETS=${PERCEPTION_ASSETS:-}
for cand in "$ASSETS" "$REPO/../shared" "$REPO/shared"; do
  if [ -n "$cand" ] && [ -f "$cand/videos/highway_960x540_25fps.mp4" ]; then ASSETS=$(cd "$cand" && pwd); break; fi
done
CLIP="$ASSETS/videos/highway_960x540_25fps.mp4"
YOLOX="$ASSETS/models/yolox_nano.onnx"
if [ ! -f "$CLIP" ]; then
  say "test assets not found (looked in \$PERCEPTION_ASSETS, ../shared, ./shared): set PERCEPTION_ASSETS"
  exit 3
fi

GPU=$("$PY" -c "import torch; print(1 if torch.cuda.is_available() else 0)")
{
  echo "# gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
  command -v nvidia-smi >/dev/null && nvidia-smi || echo "nvidia-smi: not found"
  "$PY" - <<'EOF'
import importlib, platform, os
import torch
print(f"python {platform.python_version()} ({os.path.realpath(__import__('sys').executable)})")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
      f"GPU available: {torch.cuda.is_available()}")
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"  cuda:{i} {p.name}, {p.total_memory / 2**30:.0f} GiB, compute {p.major}.{p.minor}")
for name in ("ultralytics", "onnxruntime", "openvino", "tensorrt", "pycuda", "cv2", "numpy"):
    try:
        m = importlib.import_module(name)
        extra = f" providers {m.get_available_providers()}" if name == "onnxruntime" else ""
        print(f"{name} {getattr(m, '__version__', '?')}{extra}")
    except Exception as exc:  # report, never fail here
        print(f"{name}: not importable ({type(exc).__name__}: {exc})")
print(f"cpu: {os.cpu_count()} cores")
EOF
} >"$OUT/environment.txt" 2>&1
cat "$OUT/environment.txt" >&2

if [ "$GPU" = 1 ]; then
  DEVICE="cuda:0" PRECISION="fp16" FRAMES="" REPEAT=3
else
  say "no CUDA GPU visible to torch: running the same steps on the CPU (shorter), as a check of this script"
  DEVICE="cpu" PRECISION="fp32" FRAMES="--frames 40" REPEAT=1
fi

# ---------------------------------------------------------------- the model
if [ -z "$MODEL" ]; then
  MODEL=$("$PY" - <<'EOF'
from pathlib import Path
from perception.detect.runtimes.ultralytics import load_ultralytics
load_ultralytics()
from ultralytics.utils import SETTINGS
for folder in (Path(SETTINGS["weights_dir"]), Path.cwd()):
    for name in ("yolo11n.pt", "yolov8n.pt"):
        if (folder / name).is_file():
            print(folder / name)
            raise SystemExit
EOF
)
fi
if [ -z "$MODEL" ]; then
  MODEL="$OUT/yolov8n_untrained.pt"
  say "no trained .pt here: building YOLOv8n from Ultralytics' yaml with untrained weights ($MODEL);" \
    "it detects nothing, so FPS measure the compute and the pipeline around it, not tracking real objects"
  [ "$DRY" = 1 ] || "$PY" - "$MODEL" <<'EOF'
import sys
from perception.detect.runtimes.ultralytics import load_ultralytics
from perception.detect.labels import COCO_NAMES
model = load_ultralytics().YOLO("yolov8n.yaml", task="detect")
model.model.names = dict(enumerate(COCO_NAMES))
model.save(sys.argv[1])
EOF
fi
say "model: $MODEL; device $DEVICE, precision $PRECISION"

cat >"$OUT/gpu.yaml" <<EOF
detector:
  backend: ultralytics
  ultralytics_device: "$DEVICE"
  precision: $PRECISION
  input_size: [640, 640]
EOF

# ---------------------------------------------------------------- run and bench
CLI=("$PY" -m perception.cli)
run run_ultralytics 120 "${CLI[@]}" run "$CLIP" --model "$MODEL" --config "$OUT/gpu.yaml" --out "$OUT/run"
# shellcheck disable=SC2086
run bench_ultralytics 180 "${CLI[@]}" bench "$CLIP" --model "$MODEL" --config "$OUT/gpu.yaml" --mode fast \
  --compare detector,sequential,ultralytics --repeat "$REPEAT" $FRAMES --out "$OUT/bench_ultralytics_$DEVICE"

if "$PY" -c "import tensorrt, pycuda.driver" >/dev/null 2>&1 && [ "$GPU" = 1 ]; then
  run build_engine 240 "${CLI[@]}" build-engine "$YOLOX" --fp16 --imgsz 384 640
  run bench_tensorrt 120 "${CLI[@]}" bench "$CLIP" --model "$YOLOX" --backend tensorrt --imgsz 384 640 \
    --mode fast --compare detector,sequential --repeat "$REPEAT" --out "$OUT/bench_tensorrt"
else
  say "TensorRT part skipped: tensorrt and pycuda do not both import here (or no GPU)"
fi

# ---------------------------------------------------------------- summary
[ "$DRY" = 1 ] || "$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
for path in sorted(Path(sys.argv[1]).glob("bench_*/bench.json")):
    data = json.loads(path.read_text())
    det = data["detector"]
    print(f"{path.parent.name}: {det['backend']} {det.get('precision', '')} {det['input_hw']}")
    for name, mode in data["modes"].items():
        e2e = mode["latency_ms"].get("e2e", {})
        print(f"  {name:12s} {mode['fps_median']:7.1f} FPS  e2e p50 {e2e.get('p50') or 0:6.1f} ms  p99 {e2e.get('p99') or 0:6.1f} ms")
    for key, value in data["checks"].items():
        print(f"  {key}: {value:.3f}")
EOF
say "done in $(( $(date +%s) - START )) s; outputs in $OUT${FAILED:+; failed steps: ${FAILED[*]}}"
if [ ${#FAILED[@]} -gt 0 ] && [ "$GPU" = 1 ]; then exit 1; fi
exit 0
