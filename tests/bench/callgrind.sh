#!/bin/bash
# Instructions per operation of each allocator on each workload, counted by callgrind:
# exact and free of the host's noise, where bench's timings are not. Each workload and
# variant is run twice by bench --only at 1 thread, with OPS_BIG and OPS_SMALL operations;
# the difference of their total instruction counts over the difference of the operations
# is the cost of one operation, with the program's start, the run's setup (churn's live
# set) and its teardown cancelled out. Both runs share their first OPS_SMALL operations
# (the same seed), so the difference is exactly the operations in between.
#
#   tests/bench/callgrind.sh [BUILD_DIR] [OPS_BIG] [OPS_SMALL]   (build/release, 200000, 20000)
#
# Variants: libc, mmt, tagged, limits and peer, and the allocator mmt is built over when it is not glibc;
# the last columns are what mmt and the peer add to the allocator they sit on.
set -eu
dir=${1:-build/release}
big=${2:-200000}
small=${3:-20000}
bench=$dir/bench
[ -x "$bench" ] || { echo "callgrind: $bench is not a bench program (build first)" >&2; exit 2; }
command -v valgrind > /dev/null || { echo "callgrind: valgrind is not installed" >&2; exit 2; }
[ "$big" -gt "$small" ] || { echo "callgrind: OPS_BIG must be larger than OPS_SMALL" >&2; exit 2; }

# The allocator mmt sits on (its calls are what mmt and the peer add to): glibc, or the
# one the build names besides libc, mmt, policy and peer.
base=libc
for v in $("$bench" --variants); do
    case $v in libc | mmt | policy | peer | tagged | limits) ;; *) base=$v ;; esac
done
variants=(libc mmt tagged limits peer)
[ "$base" = libc ] || variants=(libc "$base" mmt tagged limits peer)

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Total instructions (Ir) of one run: bench --only WORKLOAD VARIANT 1 OPS.
instructions() {
    local file=$out/$1.$2.$3
    valgrind --tool=callgrind --callgrind-out-file="$file" "$bench" --only "$1" "$2" 1 "$3" \
        > /dev/null 2>&1
    sed -n 's/^summary: *//p' "$file"
}

echo "instructions per operation (callgrind, 1 thread, $big - $small operations)"
printf '  %-8s' workload
for v in "${variants[@]}"; do printf ' %9s' "$v"; done
printf ' %13s %13s\n' "mmt-$base" "peer-$base"
for w in churn grow pairs; do
    printf '  %-8s' "$w"
    declare -A per=()
    for v in "${variants[@]}"; do
        a=$(instructions "$w" "$v" "$big")
        b=$(instructions "$w" "$v" "$small")
        per[$v]=$(awk -v a="$a" -v b="$b" -v n=$((big - small)) 'BEGIN { printf "%.1f", (a - b) / n }')
        printf ' %9s' "${per[$v]}"
    done
    for v in mmt peer; do
        printf ' %+13.1f' "$(awk -v x="${per[$v]}" -v y="${per[$base]}" 'BEGIN { print x - y }')"
    done
    printf '\n'
done
