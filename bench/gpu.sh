#!/usr/bin/env bash
# On a machine with a GPU and its own torch, transformers, peft, accelerate, trl and datasets (no Django needed):
# the trainer's tests, then the fine-tuning benchmark on a 0.5B Llama-shaped model (ours, the plain Trainer script
# and TRL's SFTTrainer), with SDPA and, where flash-attn is installed, again with FlashAttention 2.
#
#   bash bench/gpu.sh [OUTPUT_DIR]      # logs go to OUTPUT_DIR (default: ./var/gpu)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-var/gpu}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
python3 -c 'import torch; print(torch.__version__, torch.cuda.get_device_name())' | tee "$out/device.txt"
python3 -c 'import transformers, peft, trl; print("transformers", transformers.__version__, "peft", peft.__version__,
"trl", trl.__version__)' 2>&1 | tee -a "$out/device.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$out/device.txt"
# --noconftest: the suite's conftest files set up Django, PostgreSQL and Redis; the trainer needs none.
python3 -m pytest --noconftest -p no:django -p no:cacheprovider -o addopts="" -q \
  tests/training/test_trainer.py tests/training/test_data.py 2>&1 | tee "$out/tests.txt"
tests=${PIPESTATUS[0]}
bench_args=(--size 0.5b --steps 40 --warmup 5 --batch-size 8 --accumulation 2 --max-seq-length 2048 --examples 1000)
python3 bench/train.py "${bench_args[@]}" 2>&1 | tee "$out/bench.txt"
bench=${PIPESTATUS[0]}
if python3 -c 'import flash_attn' 2>/dev/null; then
  python3 bench/train.py "${bench_args[@]}" --attn flash_attention_2 2>&1 | tee "$out/bench-flash.txt"
  flash=${PIPESTATUS[0]}
  bench=$(( bench || flash ))
else
  echo "flash-attn is not installed: no FlashAttention run" | tee "$out/bench-flash.txt"
fi
echo "tests exit $tests, bench exit $bench"
exit $(( tests || bench ))
