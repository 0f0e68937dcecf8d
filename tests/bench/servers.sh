#!/bin/bash
# Throughput of real servers under each memory tool: memcached (loaded by memaslap), Redis
# (redis-benchmark) and nginx (ab), each run plainly, under mmt-run (default policy, summary
# at exit), under glibc's memusage (Debian libc-devtools), under heaptrack (recording only),
# over jemalloc with its exit statistics and over mimalloc with its exit statistics. A tool
# or server that is not installed gets "-".
#
# The machine this runs on is shared and its speed swings by a quarter in phases of a tenth
# of a second, so every tool's run is paired with plain runs right before and after it: a
# round runs, for each server, plain, then each tool in a random order with a plain run
# after each (the plain run after one tool is the one before the next), and the round's
# ratio for a tool is its requests per second over the mean of the two plain runs around it.
# The table gives, per server and tool, the median ratio over the rounds with the 95%
# interval of that median by order statistics (the j-th smallest and j-th largest of the n
# rounds, j the largest for which the binomial coverage is at least 95%; none under 6
# rounds), the plain runs' median requests per second, and the median peak RSS: the VmHWM
# of every process of the server (a pre-forking server's worker too; not the tool's own
# processes nor the load generator) summed, read just before the server is stopped.
#
#   tests/bench/servers.sh [BUILD_DIR] [ROUNDS]      (default build/release, 11 rounds)
#   tests/bench/servers.sh --quick [BUILD_DIR]       (1 round, short loads: CI smoke run)
#
# Servers and load, all on 127.0.0.1 with a free port and a folder of their own:
#   memcached -t 1 -m 256 -U 0: memaslap (libmemcached-tools), 1 thread, 4 connections,
#     90% get and 10% set of values of 100..10,000 B, for 2 s
#   redis-server --save '' --appendonly no: redis-benchmark -t set,get -P 16 -c 4 -r 100000,
#     500,000 requests of each; the figure is both together (their total over their time)
#   nginx, a master and 1 worker, a 64 KiB file: ab -k -c 4, 50,000 requests
# shellcheck disable=SC2046 # $(server_pids ...) is a list of pids
set -u
quick=0
if [ "${1:-}" = --quick ]; then quick=1; shift; fi
bin=$(cd "${1:-build/release}" && pwd)
rounds=${2:-11}
[ $quick = 1 ] && rounds=1
work=$(mktemp -d /tmp/mmt-servers-XXXXXX)
cleanup() {
    # A server still running was left by an interrupted run (a run happens in a subshell,
    # which writes its server's pid to $work/running while it runs).
    local top
    top=$(cat "$work/running" 2> /dev/null)
    if [ -n "$top" ] && kill -0 "$top" 2> /dev/null; then
        kill -TERM $(server_pids "$top" "$exe") "$top" 2> /dev/null
        sleep 1
        kill -KILL $(server_pids "$top" "$exe") "$top" 2> /dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mc_seconds=2 redis_requests=500000 nginx_requests=50000
[ $quick = 1 ] && mc_seconds=1 redis_requests=20000 nginx_requests=2000

jemalloc=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
mimalloc=/usr/lib/x86_64-linux-gnu/libmimalloc.so.2
servers=(memcached redis nginx)
tools=(plain mmt-run memusage heaptrack jemalloc-stats mimalloc-stats)
root=0
[ "$(id -u)" = 0 ] && root=1

have_tool() {
    case $1 in
    plain) return 0 ;;
    mmt-run) [ -x "$bin/mmt-run" ] ;;
    jemalloc-stats) [ -f $jemalloc ] ;;
    mimalloc-stats) [ -f $mimalloc ] ;;
    *) command -v "$1" > /dev/null ;;
    esac
}

# The server's executable and its load generator.
server_exe() {
    case $1 in
    memcached) command -v memcached ;;
    redis) command -v redis-server ;;
    nginx) command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } ;;
    esac
}
have_server() {
    [ -n "$(server_exe "$1")" ] || return 1
    case $1 in
    memcached) command -v memcaslap > /dev/null || command -v memaslap > /dev/null ;;
    redis) command -v redis-benchmark > /dev/null ;;
    nginx) command -v ab > /dev/null ;;
    esac
}

# A port on 127.0.0.1 that nothing listens on, below Linux's range of ephemeral ports so that
# no client's connection holds it.
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 12000))
        (exec 3<> /dev/tcp/127.0.0.1/$p) 2> /dev/null || { echo $p; return; }
    done
}

# Folders and files a server needs, made once.
prepare() {
    mkdir -p "$work/memcached" "$work/redis" "$work/nginx/html"
    # memaslap's load: keys of 64 B, values of 100..10,000 B, 10% set and 90% get.
    printf 'key\n64 64 1\nvalue\n100 10000 1\ncmd\n0 0.1\n1 0.9\n' > "$work/memcached/load.cfg"
    head -c 65536 /dev/urandom > "$work/nginx/html/file"
    # As root, nginx's worker becomes nobody, who must be able to read the file.
    nginx_user=""
    if [ $root = 1 ] && ! runuser -u nobody -- test -r "$work/nginx/html/file" 2> /dev/null; then
        nginx_user="user root;"
    fi
}

# Sets argv to the command that runs server $1 on port $2 in the foreground.
server_argv() {
    local dir=$work/$1
    case $1 in
    memcached)
        argv=("$exe" -t 1 -m 256 -U 0 -l 127.0.0.1 -p "$2")
        [ $root = 1 ] && argv+=(-u root)
        ;;
    redis)
        argv=("$exe" --port "$2" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir")
        ;;
    nginx)
        cat > "$dir/nginx.conf" << EOF
$nginx_user
master_process on;
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log stderr;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    server {
        listen 127.0.0.1:$2;
        root $dir/html;
    }
}
EOF
        argv=("$exe" -p "$dir" -c "$dir/nginx.conf" -e stderr)
        ;;
    esac
}

# Requests per second of server $1 on port $2, by its load generator; nothing if it failed.
load() {
    local out=$work/load.txt
    case $1 in
    memcached)
        local slap
        slap=$(command -v memcaslap || command -v memaslap)
        "$slap" -s "127.0.0.1:$2" -T 1 -c 4 -w 1k -t "${mc_seconds}s" -F "$work/memcached/load.cfg" > "$out" 2>&1
        grep -o 'TPS: [0-9]*' "$out" | awk '{ print $2 }'
        ;;
    redis)
        redis-benchmark -p "$2" -q -n $redis_requests -t set,get -P 16 -c 4 -r 100000 2>&1 | tr '\r' '\n' > "$out"
        awk -v n=$redis_requests '/^ *(SET|GET): [0-9.]+ requests per second/ { t += n / $2; k++ }
            END { if (k == 2) printf "%.1f\n", 2 * n / t }' "$out"
        ;;
    nginx)
        ab -k -n $nginx_requests -c 4 "http://127.0.0.1:$2/file" > "$out" 2>&1
        grep -q '^Failed requests: *0$' "$out" && ! grep -q 'Non-2xx' "$out" &&
            awk '/^Requests per second:/ { print $4 }' "$out"
        ;;
    esac
}

# The processes of the tree under pid $1 (itself included) that run executable $2.
server_pids() {
    local p want
    want=$(readlink -f "$2")
    for p in $(ps -e -o pid=,ppid= | awk -v top="$1" '
        { parent[$1] = $2; pids[NR] = $1 }
        END { for (i = 1; i <= NR; i++) { p = pids[i]
            for (q = p; q != "" && q > 1; q = parent[q]) if (q == top) { print p; break } } }'); do
        [ "$(readlink -f /proc/"$p"/exe 2> /dev/null)" = "$want" ] && echo "$p"
    done
}

# One run of server $1 under tool $2: prints "REQUESTS_PER_SECOND PEAK_KIB", or "fail REASON".
run_once() {
    local server=$1 tool=$2 port pids p rps kib start_ok
    for _ in 1 2 3; do
        port=$(free_port)
        server_argv "$server" "$port"
        case $tool in
        plain) ;;
        mmt-run) argv=("$bin/mmt-run" --out "$work/mmt-summary.txt" -- "${argv[@]}") ;;
        memusage) argv=(memusage "${argv[@]}") ;;
        heaptrack) argv=(heaptrack -o "$work/ht" "${argv[@]}") ;;
        jemalloc-stats)
            # Redis links jemalloc already: only its statistics at exit are asked for.
            if [ "$server" = redis ]; then
                argv=(env MALLOC_CONF=stats_print:true "${argv[@]}")
            else
                argv=(env LD_PRELOAD="$jemalloc" MALLOC_CONF=stats_print:true "${argv[@]}")
            fi
            ;;
        mimalloc-stats) argv=(env LD_PRELOAD="$mimalloc" MIMALLOC_SHOW_STATS=1 "${argv[@]}") ;;
        esac
        (cd "$work/$server" && exec "${argv[@]}") < /dev/null > "$work/server.log" 2>&1 &
        top=$!
        echo "$top" > "$work/running"
        start_ok=0
        for ((i = 0; i < 600; i++)); do
            kill -0 "$top" 2> /dev/null || break
            if (exec 3<> /dev/tcp/127.0.0.1/$port) 2> /dev/null; then start_ok=1; break; fi
            sleep 0.05
        done
        [ $start_ok = 1 ] && break
        stop_server
    done
    if [ $start_ok = 0 ]; then
        echo "fail did not start: $(head -c 300 "$work/server.log" | tr '\n' ' ')"
        return
    fi
    rps=$(load "$server" "$port")
    pids=$(server_pids "$top" "$exe")
    kib=0
    for p in $pids; do
        kib=$((kib + $(awk '/^VmHWM:/ { print $2 }' /proc/"$p"/status 2> /dev/null || echo 0)))
    done
    stop_server
    if [ -z "$rps" ]; then
        echo "fail load: $(tail -c 300 "$work/load.txt" | tr '\n' ' ') / $(head -c 300 "$work/server.log" | tr '\n' ' ')"
    elif [ "$tool" = mmt-run ] && ! grep -q "^mmt-run: .*: allocated [0-9]* B" "$work/mmt-summary.txt" 2> /dev/null; then
        echo "fail mmt-run wrote no summary: $(head -c 300 "$work/mmt-summary.txt" 2> /dev/null)"
    else
        echo "$rps $kib"
    fi
    rm -f "$work"/ht* "$work/mmt-summary.txt"
}

# SIGTERM to the server's topmost processes (not to a tool's wrapper, which a shell script
# may be and would not pass it on), then waits for the whole tree: up to 60 s, since a tool
# may write its data at exit; SIGKILL after that.
stop_server() {
    local pids p q roots=""
    pids=$(server_pids "$top" "$exe")
    for p in $pids; do
        q=$(awk '{ print $4 }' /proc/"$p"/stat 2> /dev/null)
        [[ " $pids " == *" $q "* ]] || roots+=" $p"
    done
    [ -n "$roots" ] && kill -TERM $roots 2> /dev/null
    for ((i = 0; i < 1200; i++)); do
        kill -0 "$top" 2> /dev/null || break
        sleep 0.05
    done
    if kill -0 "$top" 2> /dev/null; then
        echo "servers.sh: $server under $tool did not stop in 60 s after SIGTERM: killed" >&2
        kill -KILL $(server_pids "$top" "$exe") "$top" 2> /dev/null
    fi
    wait "$top" 2> /dev/null
    rm -f "$work/running"
}

# The median of the numbers on stdin, and the 95% interval of the median by order statistics:
# prints "MEDIAN LOW HIGH" (LOW and HIGH empty under 6 numbers).
median_ci() {
    sort -g | awk '{ v[NR] = $1 } END {
        n = NR; if (n == 0) exit
        m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
        # P(Binomial(n, 1/2) <= j - 1) for growing j, while both tails stay within 2.5%.
        j = 0; cdf = 0; term = 0.5 ^ n
        for (k = 0; k < n; k++) {
            cdf += term
            if (cdf > 0.025) break
            j = k + 1
            term = term * (n - k) / (k + 1)
        }
        if (j >= 1) print m, v[j], v[n + 1 - j]; else print m
    }'
}

# Keeps the result of one run of $1 under $2: its rate and peak, or its failure.
record() {
    if [ "${3%% *}" = fail ]; then
        failures[$1.$2]+=x
        echo "servers.sh: $1 under $2: ${3#fail }" >&2
        return
    fi
    [ "$2" = plain ] && rates[$1]+="${3% *} "
    peaks[$1.$2]+="${3#* } "
}

prepare
declare -A ratios=() peaks=() rates=() failures=()
start_time=$(date +%s)
for ((r = 1; r <= rounds; r++)); do
    echo "servers.sh: round $r of $rounds ($(($(date +%s) - start_time)) s)" >&2
    for server in "${servers[@]}"; do
        have_server "$server" || continue
        exe=$(server_exe "$server")
        before=$(run_once "$server" plain)
        record "$server" plain "$before"
        for t in $(printf '%s\n' "${tools[@]:1}" | shuf); do
            have_tool "$t" || continue
            got=$(run_once "$server" "$t")
            record "$server" "$t" "$got"
            after=$(run_once "$server" plain)
            record "$server" plain "$after"
            if [ "${before%% *}" != fail ] && [ "${got%% *}" != fail ] && [ "${after%% *}" != fail ]; then
                ratios[$server.$t]+="$(awk -v a="${before% *}" -v x="${got% *}" -v b="${after% *}" \
                    'BEGIN { printf "%.4f", x / ((a + b) / 2) }') "
            fi
            before=$after
        done
    done
done
echo "servers.sh: done in $(($(date +%s) - start_time)) s" >&2

echo "requests per second under each tool over plain runs right before and after it: median of"
echo "$rounds round(s) [95% interval of the median, order statistics]; plain: median requests per second"
printf '%-10s %10s' server plain
for t in "${tools[@]:1}"; do printf ' %18s' "$t"; done
echo
for server in "${servers[@]}"; do
    printf '%-10s' "$server"
    if ! have_server "$server"; then
        printf ' %10s' -
        for t in "${tools[@]:1}"; do printf ' %18s' -; done
        echo
        continue
    fi
    printf ' %10.0f' "$(printf '%s\n' ${rates[$server]:-0} | median_ci | awk '{ print $1 }')"
    for t in "${tools[@]:1}"; do
        if ! have_tool "$t"; then
            cell=-
        elif [ -z "${ratios[$server.$t]:-}" ]; then
            cell="failed"
            failures[$server.$t]=""
        else
            cell=$(printf '%s\n' ${ratios[$server.$t]} | median_ci |
                awk '{ if (NF == 3) printf "%.2f [%.2f-%.2f]", $1, $2, $3; else printf "%.2f", $1 }')
        fi
        [ -n "${failures[$server.$t]:-}" ] && cell+=" (${#failures[$server.$t]} failed)"
        printf ' %18s' "$cell"
    done
    echo
done
echo
echo "peak RSS (MiB): median over the runs of VmHWM summed over the server's processes"
printf '%-10s %10s' server plain
for t in "${tools[@]:1}"; do printf ' %18s' "$t"; done
echo
for server in "${servers[@]}"; do
    printf '%-10s' "$server"
    for t in "${tools[@]}"; do
        w=18
        [ "$t" = plain ] && w=10
        if ! have_server "$server" || ! have_tool "$t" || [ -z "${peaks[$server.$t]:-}" ]; then
            printf " %${w}s" -
        else
            printf " %${w}.1f" "$(printf '%s\n' ${peaks[$server.$t]} | median_ci |
                awk '{ print $1 / 1024 }')"
        fi
    done
    echo
done
exit 0
