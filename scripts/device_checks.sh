#!/usr/bin/env bash
# The GPU measurements of the neural trainer in one call, for a lent H100/H200 (the `device` tool), within about
# 8 minutes at the default 40 s per run: the CUDA-only tests, then scripts/bench_train.py's three tables (every
# model at the size the rule picks; the transformer eager against compiled, with cold caches; AdamW against Muon).
# Its python3 must hold torch and tokenizers (the lent machines' image does). The text is the proxy, copied into
# .device/, which .gitignore keeps out of git (WikiText never enters it) and the call carries:
#   here:  mkdir -p .device && cp ../shared/wikitext/wiki.test.raw .device/
#   run:   command "bash scripts/device_checks.sh", carry [".device"], timeout_s 600
# Tables land in $OUT (or ./device_out); set RUN_SECONDS to change the seconds per run.
set -uo pipefail
export PYTHONUNBUFFERED=1
out=${OUT:-device_out}
seconds=${RUN_SECONDS:-40}
text=${TEXT:-.device/wiki.test.raw}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$out/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_train.py -k "pinned or prefetch" 2>&1 | tail -3 | tee "$out/tests.txt"
bench() { timeout 250 python3 scripts/bench_train.py --device cuda --seconds "$seconds" --text "$text" "$@"; }
bench 2>&1 | tee "$out/table.md"
bench --models transformer --compare compile 2>&1 | tee "$out/compile.md"
bench --models transformer --compare optimizer 2>&1 | tee "$out/optimizer.md"
