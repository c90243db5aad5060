#!/usr/bin/env bash
# Full-scale pruning on one GPU (prepared for an H100; NOT run yet, see docs/results.md):
# the paper's CIFAR ResNet-18 on the whole CIFAR-10 JPEG copy, trained dense, then Ising
# pruning at the paper's rate (50% of parameters) and the baselines from the same dense
# model, each fine-tuned the same number of epochs; prints the table. Mixed precision,
# channels_last, data and augmentation on the GPU. Budget: under 9 minutes of wall time.
#
#   benchmarks/pruning/gpu_full.sh [OUT_DIR]       (default runs/gpu-full)
#
# Data travels with the checkout: copy the archive into an ignored folder first,
#   mkdir -p data && cp ../shared/data/cifar10-jpeg.tar.xz data/   (data/ is git-ignored)
# and carry "data" (18.6 MB). Packages: the machine's torch plus this project's wheels
# (see the device README's .whl recipe: dimod, dwave-samplers, ortools, torch-pruning,
# safetensors, numba, llvmlite, networkx, tqdm), then `pip install --no-deps -e .`.
# Environment: PYTHON, DENSE_EPOCHS (15), PRE_EPOCHS (1), FINETUNE_EPOCHS (5), BATCH (512),
# DEVICE (cuda), EXTRA (more options for every run). Smoke test without a GPU:
#   DEVICE=cpu DENSE_EPOCHS=1 PRE_EPOCHS=0 FINETUNE_EPOCHS=1 BATCH=64 \
#   EXTRA="--model resnet20 --train-subset 256 --test-subset 200" DATA=/work/data gpu_full.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
OUT=${1:-runs/gpu-full}
DENSE_EPOCHS=${DENSE_EPOCHS:-15}
PRE_EPOCHS=${PRE_EPOCHS:-1}
FINETUNE_EPOCHS=${FINETUNE_EPOCHS:-5}
BATCH=${BATCH:-512}
DATA=${DATA:-/tmp/cifar10-jpeg}
DEVICE=${DEVICE:-cuda}
read -r -a extra <<< "${EXTRA:-}"

if [[ $DEVICE == cuda* ]]; then
    "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_full.sh: no CUDA device')"
    gpu_flags=(--amp --channels-last)
else
    gpu_flags=()
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
if [[ ! -d $DATA/train ]]; then
    mkdir -p "$DATA" && tar -xJf data/cifar10-jpeg.tar.xz -C "$DATA"
fi
mkdir -p "$OUT"
common=(--model resnet18 --dataset imagefolder --data-dir "$DATA" --batch-size "$BATCH"
        --device "$DEVICE" "${gpu_flags[@]}" --no-progress --seed 0 "${extra[@]}")
start=$(date +%s)
"$PYTHON" -m ising_qubo.cli train --method none --epochs "$DENSE_EPOCHS" --finetune-epochs 0 \
    --lr 0.2 --out "$OUT/dense" "${common[@]}"
for method in ising:redundancy ising:ipruning l1 random tp-magnitude; do
    name=${method/:/-}
    args=(--method "${method%%:*}")
    [[ $method == ising:* ]] && args+=(--energy "${method#ising:}" --solver torch-sa)
    "$PYTHON" -m ising_qubo.cli prune "${args[@]}" --checkpoint "$OUT/dense/model" --keep 0.5 \
        --epochs "$PRE_EPOCHS" --finetune-epochs "$FINETUNE_EPOCHS" --lr 0.02 \
        --out "$OUT/$name" "${common[@]}"
done
"$PYTHON" - "$OUT" "$start" <<'PY'
import json, sys, time
from pathlib import Path
out, start = Path(sys.argv[1]), int(sys.argv[2])
dense = json.loads((out / "dense" / "report.json").read_text())
print(f"dense model: top-1 {dense['accuracy']['after']['top1']:.2f}%, "
      f"top-5 {dense['accuracy']['after']['top5']:.2f}%, {dense['params']['after']:,} params")
print("| method | top-1 | top-5 | params kept | MACs kept | selection s |")
print("|---|---|---|---|---|---|")
for run in sorted(p for p in out.iterdir() if p.name != "dense"):
    r = json.loads((run / "report.json").read_text())
    print(f"| {run.name} | {r['accuracy']['after']['top1']:.2f} | "
          f"{r['accuracy']['after']['top5']:.2f} | {100 * r['params']['kept_fraction']:.1f}% | "
          f"{100 * r['macs']['kept_fraction']:.1f}% | "
          f"{r['timing_seconds'].get('selection', 0):.2f} |")
print(f"wall time: {time.time() - start:.0f} s")
PY
