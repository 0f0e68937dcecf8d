#!/bin/bash
# Overhead of watching a program's memory, by tool, on real programs: each program is
# run plainly, under mmt-run (default policy, summary at exit), under glibc's memusage
# (Debian libc-devtools) and under heaptrack (recording only), interleaved round by
# round; each figure is the median wall time over the rounds, and the ratio is to the
# plain run's median. A tool that is not installed gets "-".
#
#   tests/bench/tools.sh [BUILD_DIR] [ROUNDS]        (default build/release, 5)
#   tests/bench/tools.sh --quick                      (1 round, smaller inputs: CI smoke run)
set -u
quick=0
if [ "${1:-}" = --quick ]; then quick=1; shift; fi
bin=$(cd "${1:-build/release}" && pwd)
rounds=${2:-5}
[ $quick = 1 ] && rounds=1
src=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/mmt-tools-XXXXXX)
trap 'rm -rf "$work"' EXIT

# Inputs: a file of random numbers for sort (50 MB, 5 MB when quick).
mb=50
[ $quick = 1 ] && mb=5
awk -v n=$((mb * 1024 * 1024 / 13)) 'BEGIN { srand(1); for (i = 0; i < n; i++) printf "%06d%06d\n", int(rand() * 1e6), int(rand() * 1e6) }' > "$work/numbers.txt"
lists=3000000
[ $quick = 1 ] && lists=300000

names=(sort python3 gcc git threads)
commands=(
    "sort -n $work/numbers.txt"
    "python3 -c 'x = [[i] * 10 for i in range($lists)]; d = {i: str(i) for i in range($lists // 3)}; print(len(x), len(d))'"
    "gcc -O2 -I$src/include -c $src/tools/plot.c -o $work/plot.o"
    "git -C $src status --porcelain"
    "$bin/e2e_threads"
)
tools=(plain mmt-run memusage heaptrack)

have() {
    case $1 in
    plain) return 0 ;;
    mmt-run) [ -x "$bin/mmt-run" ] ;;
    *) command -v "$1" > /dev/null ;;
    esac
}

# Seconds taken by one run of command $2 under tool $1; the program's output is dropped.
run_once() {
    local tool=$1 cmd=$2 start end
    start=$(date +%s.%N)
    case $tool in
    plain) bash -c "$cmd" > /dev/null 2>&1 ;;
    mmt-run) "$bin/mmt-run" --out /dev/null -- bash -c "exec $cmd" > /dev/null 2>&1 ;;
    memusage) memusage bash -c "exec $cmd" > /dev/null 2>&1 ;;
    heaptrack) heaptrack -o "$work/ht" bash -c "exec $cmd" > /dev/null 2>&1; rm -f "$work"/ht* ;;
    esac
    end=$(date +%s.%N)
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.6f\n", b - a }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "wall time, median of $rounds rounds; ratio to the plain run of the same round set"
printf '%-9s %10s' program "plain (s)"
for t in "${tools[@]:1}"; do printf ' %12s' "$t"; done
echo
for i in "${!names[@]}"; do
    declare -A times=()
    for ((r = 0; r < rounds; r++)); do
        for t in "${tools[@]}"; do
            have "$t" || continue
            times[$t]+="$(run_once "$t" "${commands[$i]}") "
        done
    done
    base=$(printf '%s\n' ${times[plain]} | median)
    printf '%-9s %10.3f' "${names[$i]}" "$base"
    for t in "${tools[@]:1}"; do
        if have "$t"; then
            m=$(printf '%s\n' ${times[$t]} | median)
            printf ' %11.2fx' "$(awk -v a="$m" -v b="$base" 'BEGIN { print a / b }')"
        else
            printf ' %12s' -
        fi
    done
    echo
    unset times
done
