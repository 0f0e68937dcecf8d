#!/bin/bash
# Two builds of mmt side by side, for a change that must not move the figures: each
# workload of bench --only is run with the old build, the new one and the old one again,
# round after round; a round's ratio is new / mean(the two old runs around it), and the
# figure is the median over the rounds with the 95% interval of that median by order
# statistics. The machine's drift between rounds cancels out; within a round it is what
# the two old runs around the new one bound.
#
#   tests/bench/compare.sh OLD_BUILD_DIR NEW_BUILD_DIR [ROUNDS] [OPS]   (default 21, 1000000)
set -eu
old=$1/bench
new=$2/bench
rounds=${3:-21}
ops=${4:-1000000}
for b in "$old" "$new"; do
    [ -x "$b" ] || { echo "compare: $b is not a bench program (build both first)" >&2; exit 2; }
done

# ns/op of one run.
one() { "$1" --only "$2" "$3" 1 "$ops" | sed -n 's/.*: \([0-9.]*\) ns\/op$/\1/p'; }

echo "new / old, median of $rounds rounds [95% interval], 1 thread, $ops operations a run"
for workload in churn pairs grow; do
    for variant in mmt policy; do
        ratios=()
        for ((r = 0; r < rounds; r++)); do
            a=$(one "$old" $workload $variant)
            n=$(one "$new" $workload $variant)
            b=$(one "$old" $workload $variant)
            ratios+=("$(awk -v a="$a" -v b="$b" -v n="$n" 'BEGIN { printf "%.4f\n", n / ((a + b) / 2) }')")
        done
        printf '%s\n' "${ratios[@]}" | sort -g | awk -v w="$workload" -v v="$variant" '
            { x[NR] = $1 }
            END {
                n = NR; m = (n % 2) ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2
                # 95% interval of the median: ranks n/2 -+ 0.98 sqrt(n), rounded outward.
                lo = int(n / 2 - 0.98 * sqrt(n)); hi = int(n / 2 + 0.98 * sqrt(n) + 1)
                if (lo < 1) lo = 1; if (hi > n) hi = n
                printf "%-6s %-7s %.3f [%.3f, %.3f]\n", w, v, m, x[lo], x[hi]
            }'
    done
done
