/*
 * Real servers nobody here wrote, run by mmt-run as an operator would: Debian's memcached,
 * redis-server and nginx, each under the default policy (text summary on stderr) and under
 * a copy of policies/high_water.lua (JSON summary into a file), answering clients of
 * ours byte for byte and the load tools of their projects (redis-benchmark, ab). Each is
 * stopped as docker or systemd would stop it, by SIGTERM to mmt-run, which must pass it on,
 * wait, exit with the server's own status (0: all three shut down cleanly on SIGTERM) and
 * write its summary. The summary describes the process tree (nginx's master and worker,
 * Redis's BGSAVE child), an edit of the policy while a server runs is said on its stderr,
 * and Redis's jemalloc must see Redis's data.
 *
 * The servers come from the packages memcached, redis-server, nginx-light (or nginx), and
 * the tools from redis-tools and apache2-utils: a test whose programs are missing says
 * which package to install and skips. The JSON is checked by Python's json module. Like
 * every test that runs programs under the preload library, these skip in the sanitizer
 * builds (testutil.h).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>

#include "policyutil.h"
#include "procutil.h"

#define MEMCACHED "/usr/bin/memcached"
#define REDIS_SERVER "/usr/bin/redis-server"
#define REDIS_BENCHMARK "/usr/bin/redis-benchmark"
#define NGINX "/usr/sbin/nginx"
#define AB "/usr/bin/ab"
#define PYTHON "/usr/bin/python3"

static char bin_dir[PATH_MAX], mmt_run[PATH_MAX + 16], high_water[PATH_MAX + 64];

/* The random values' generator, xorshift64*: its seed is printed when a comparison
 * fails, and MMT_TEST_SEED sets it to replay one. */
static uint64_t seed, rng;

static uint64_t next_random(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1DULL;
}

static void fill_random(unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(next_random() >> 56);
}

static int setup(void **state)
{
    if (make_test_dir(state) != 0) return -1;
    ssize_t n = readlink("/proc/self/exe", bin_dir, sizeof bin_dir - 1);
    if (n <= 0) return -1;
    bin_dir[n] = '\0';
    *strrchr(bin_dir, '/') = '\0';
    snprintf(mmt_run, sizeof mmt_run, "%s/mmt-run", bin_dir);
    const char *given = getenv("MMT_TEST_SEED");
    seed = given ? strtoull(given, NULL, 0) : (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid();
    rng = seed ? seed : 1;
    /* Servers' children whose parent dies (nginx's worker after its master, Redis's
     * BGSAVE child) come back to this process, so that teardown finds and ends them. */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) return -1;
    return find_source_in(bin_dir, "policies/high_water.lua", high_water, sizeof high_water) ? 0 : -1;
}

static int teardown(void **state)
{
    kill_everything_below();
    return remove_test_dir(state);
}

/* After each test: a test that failed with a server running leaves nothing behind. */
static int end_leftovers(void **state)
{
    (void)state;
    kill_everything_below();
    return 0;
}

/* Whether `path` is there to run; if not, says which package brings it. */
static bool have(const char *path, const char *package)
{
    if (access(path, X_OK) == 0) return true;
    print_message("%s is not installed (apt-get install %s): skipped\n", path, package);
    return false;
}

#define NEED(path, package)                                                                \
    do {                                                                                   \
        SKIP_IF_SANITIZED();                                                               \
        if (!have((path), (package))) skip();                                              \
    } while (0)

/* ---- TCP clients ------------------------------------------------------------------------ */

/* A connected socket to 127.0.0.1:port, or -1. Reads and writes time out after 20 s, so a
 * server that hangs fails the test instead of stopping it. */
static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    struct timeval t = {20, 0};
    int one = 1; /* a request written in pieces must not wait for the last one's ACK */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &t, sizeof t);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &t, sizeof t);
    return fd;
}

/* A connection with a read buffer. */
typedef struct conn {
    int fd;
    size_t start, end; /* the bytes read but not yet taken: buf[start..end) */
    unsigned char buf[1 << 16];
} conn_t;

static conn_t *conn_open(int port)
{
    conn_t *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->fd = connect_to(port);
    if (c->fd < 0) fail_msg("cannot connect to 127.0.0.1:%d: %s", port, strerror(errno));
    return c;
}

static void conn_close(conn_t *c)
{
    close(c->fd);
    free(c);
}

/* No SIGPIPE: a server gone mid-write is an error the test reports. */
static void conn_send(conn_t *c, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) fail_msg("send: %s", n < 0 ? strerror(errno) : "nothing sent");
        p += n;
        len -= (size_t)n;
    }
}

static void conn_printf(conn_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void conn_printf(conn_t *c, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof text);
    conn_send(c, text, (size_t)n);
}

/* Reads more into the buffer; false at the end of the stream. */
static bool conn_fill(conn_t *c)
{
    if (c->start == c->end) c->start = c->end = 0;
    if (c->end == sizeof c->buf) {
        memmove(c->buf, c->buf + c->start, c->end - c->start);
        c->end -= c->start;
        c->start = 0;
    }
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->end, sizeof c->buf - c->end, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail_msg("recv: %s", strerror(errno));
        c->end += (size_t)n;
        return n > 0;
    }
}

/* The next line, without its "\r\n", into line (NUL-terminated). Fails the test at the
 * end of the stream or on a line longer than len - 1. */
static void conn_line(conn_t *c, char *line, size_t len)
{
    for (;;) {
        unsigned char *at = memchr(c->buf + c->start, '\n', c->end - c->start);
        if (at) {
            size_t n = (size_t)(at - (c->buf + c->start));
            if (n == 0 || at[-1] != '\r') fail_msg("a line that does not end in \\r\\n");
            if (n - 1 >= len) fail_msg("a line of %zu bytes", n - 1);
            memcpy(line, c->buf + c->start, n - 1);
            line[n - 1] = '\0';
            c->start += n + 1;
            return;
        }
        if (c->end - c->start >= len + 2) fail_msg("a line longer than %zu bytes", len);
        if (!conn_fill(c)) fail_msg("the server closed the connection mid-line");
    }
}

/* Exactly len bytes into p. */
static void conn_read(conn_t *c, void *p, size_t len)
{
    unsigned char *to = p;
    while (len) {
        if (c->start == c->end && !conn_fill(c)) fail_msg("the server closed the connection");
        size_t n = c->end - c->start < len ? c->end - c->start : len;
        memcpy(to, c->buf + c->start, n);
        c->start += n;
        to += n;
        len -= n;
    }
}

/* Everything until the server closes, into a malloc'd buffer; its length in *len. */
static unsigned char *conn_read_all(conn_t *c, size_t *len)
{
    size_t cap = 1 << 20, n = 0;
    unsigned char *all = malloc(cap);
    assert_non_null(all);
    for (;;) {
        if (c->start == c->end && !conn_fill(c)) break;
        size_t k = c->end - c->start;
        if (n + k > cap) {
            cap = (n + k) * 2;
            all = realloc(all, cap);
            assert_non_null(all);
        }
        memcpy(all + n, c->buf + c->start, k);
        n += k;
        c->start = c->end;
    }
    *len = n;
    return all;
}

/* ---- A server under mmt-run -------------------------------------------------------------- */

typedef struct server {
    const char *program;     /* as given to mmt-run */
    bool high_water;         /* a copy of high_water.lua and a JSON summary; else defaults */
    pid_t run;               /* mmt-run's process id, 0 once it has ended */
    int port;
    char port_text[16];
    char dir[PATH_MAX];      /* the server's own folder: its data, configuration, files */
    char out[PATH_MAX + 16], err[PATH_MAX + 16]; /* mmt-run's stdout and stderr */
    char summary[PATH_MAX + 16], policy[PATH_MAX + 32];
} server_t;

/* The arguments after "--": the server and its options for s->port, NULL-terminated. */
typedef void (*server_args_fn)(server_t *s, const char **argv, size_t max);

static void server_init(server_t *s, const char *name, const char *program, bool with_high_water)
{
    memset(s, 0, sizeof *s);
    s->program = program;
    s->high_water = with_high_water;
    snprintf(s->dir, sizeof s->dir, "%s/%s", test_dir, name);
    assert_int_equal(mkdir(s->dir, 0755), 0);
    snprintf(s->out, sizeof s->out, "%s/mmt-run.out", s->dir);
    snprintf(s->err, sizeof s->err, "%s/mmt-run.err", s->dir);
    snprintf(s->summary, sizeof s->summary, "%s/summary.json", s->dir);
    if (with_high_water) {
        /* A copy, which the reload tests edit while the server runs. */
        static char text[1 << 16];
        read_file(high_water, text, sizeof text);
        assert_true(text[0] != '\0');
        snprintf(s->policy, sizeof s->policy, "%s/high_water.lua", s->dir);
        write_in_place(s->policy, text);
    }
}

/* The last `max` bytes of a file, for failure messages. */
static const char *tail_of(const char *path, size_t max)
{
    static char text[1 << 20];
    size_t n = read_file(path, text, sizeof text);
    return n > max ? text + n - max : text;
}

/* Whether connections to 127.0.0.1:port are accepted. */
static bool port_accepts(int port)
{
    int fd = connect_to(port);
    if (fd < 0) return false;
    close(fd);
    return true;
}

/* Starts `mmt-run [--policy P --report json --out S] -- SERVER...` on a free port and
 * returns once the port accepts connections (within 10 s). Another port is tried if the
 * server found the one chosen taken in between. */
static void start_server(server_t *s, server_args_fn server_args)
{
    for (int attempt = 1;; attempt++) {
        s->port = free_port();
        snprintf(s->port_text, sizeof s->port_text, "%d", s->port);
        const char *argv[64] = {mmt_run};
        size_t argc = 1;
        if (s->high_water) {
            const char *const options[] = {"--policy", s->policy, "--report", "json",
                                           "--out", s->summary, NULL};
            for (size_t i = 0; options[i]; i++) argv[argc++] = options[i];
        }
        argv[argc++] = "--";
        server_args(s, argv + argc, sizeof argv / sizeof argv[0] - argc);
        s->run = spawn_with_output(argv, s->out, s->err);

        double end = now_seconds() + 10;
        for (;;) {
            int status;
            if (waitpid(s->run, &status, WNOHANG) == s->run) {
                s->run = 0;
                static char out[8192], err[8192];
                snprintf(out, sizeof out, "%s", tail_of(s->out, 4000));
                snprintf(err, sizeof err, "%s", tail_of(s->err, 4000));
                if ((strstr(out, "Address already in use") || strstr(err, "Address already in use")) &&
                    attempt < 5)
                    break;
                char how[64];
                fail_msg("%s under mmt-run ended before it accepted connections: %s\n"
                         "stderr:\n%s\nstdout:\n%s",
                         s->program, describe_status(status, how, sizeof how), err, out);
            }
            if (port_accepts(s->port)) return;
            if (now_seconds() > end)
                fail_msg("%s under mmt-run did not accept connections on port %d in 10 s; "
                         "stderr:\n%s",
                         s->program, s->port, tail_of(s->err, 4000));
            sleep_ms(50);
        }
    }
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* The last line of `text` that starts "mmt-run: PROGRAM: ", the program named as given to
 * mmt-run or by its file name (the server's own output comes before it); NULL if none. */
static const char *summary_line(const char *text, const char *program)
{
    const char *line = NULL;
    char want[2][PATH_MAX + 32];
    snprintf(want[0], sizeof want[0], "mmt-run: %s: ", program);
    snprintf(want[1], sizeof want[1], "mmt-run: %s: ", base_name(program));
    for (const char *at = text; at; at = strchr(at, '\n') ? strchr(at, '\n') + 1 : NULL)
        if (strncmp(at, want[0], strlen(want[0])) == 0 || strncmp(at, want[1], strlen(want[1])) == 0)
            line = at;
    return line;
}

/* Stops the server as docker stop or systemd does, with SIGTERM to mmt-run, and checks
 * that mmt-run passed it on, waited, exited with the server's status `want` (what the
 * server gives on its own: 0 for all three) and wrote a summary (what it says is for
 * check_text_summary and check_json_summary), and that nothing it started is left. */
static void stop_server(server_t *s, int want)
{
    assert_true(s->run > 0);
    assert_int_equal(kill(s->run, SIGTERM), 0);
    int status = wait_for_exit(s->run, 30);
    s->run = 0;
    char how[64];
    if (!WIFEXITED(status) || WEXITSTATUS(status) != want)
        fail_msg("mmt-run of %s ended with %s, not exit status %d, after SIGTERM; stderr:\n%s",
                 s->program, describe_status(status, how, sizeof how), want,
                 tail_of(s->err, 6000));
    if (s->high_water) {
        char json[16];
        read_file(s->summary, json, sizeof json);
        if (json[0] != '{')
            fail_msg("mmt-run of %s wrote no JSON summary into %s; stderr:\n%s", s->program,
                     s->summary, tail_of(s->err, 4000));
    } else if (!summary_line(tail_of(s->err, 1 << 16), s->program)) {
        fail_msg("mmt-run of %s wrote no summary on stderr:\n%s", s->program, tail_of(s->err, 4000));
    }
    pid_t left[16];
    int n = live_descendants(getpid(), left, 16);
    if (n > 0) {
        char cmdline[256], path[64];
        snprintf(path, sizeof path, "/proc/%ld/cmdline", (long)left[0]);
        read_file(path, cmdline, sizeof cmdline);
        fail_msg("%d process(es) still running after mmt-run of %s ended, pid %ld (%s) first",
                 n, s->program, (long)left[0], cmdline);
    }
}

/* ---- The summary: the contract in one place ------------------------------------------------
 *
 * Text (the default): a first line "mmt-run: PROGRAM: ..." with the tree's totals (it
 * names allocated, peak and allocations), then one line per process naming "pid N", then
 * one for the machine around them (machine_summary.h) where it has a cgroup, PSI or
 * /proc/meminfo. JSON:
 * one object with the tree's totals (sums over its processes), the program's allocator,
 * and "processes", in the order they started, each with its pid, parent, comm, command
 * line, whether it was forked (a forked child counts only what it did after the fork:
 * allocated - freed == in_use_at_exit - in_use_at_start), its allocator and counters. */

/* How mmt-run's line for the machine starts, as the library reads the machine here (the
 * servers run in this process's cgroup); NULL where it has none of its parts. */
static const char *machine_line_start(void)
{
    mmt_machine_t m;
    mmt_machine_read(&m, MMT_MACHINE_ALL);
    return m.cgroup.version == 2 ? "mmt-run: cgroup v2, "
         : m.cgroup.version == 1 ? "mmt-run: cgroup v1, "
         : m.psi.valid           ? "mmt-run: memory pressure some "
         : m.system.total        ? "mmt-run: "
                                 : NULL;
}

/* Checks the text summary at the end of stderr: the line for the program (named as given
 * to mmt-run, or by its file name), then between min_processes and max_processes lines
 * naming "pid N" with N > 0, then the machine's line, last, where it has one. */
static void check_text_summary(const server_t *s, int min_processes, int max_processes)
{
    static char err[1 << 20];
    read_file(s->err, err, sizeof err);
    const char *line = summary_line(err, s->program);
    if (!line)
        fail_msg("no summary line \"mmt-run: %s: ...\" on mmt-run's stderr:\n%s", s->program,
                 tail_of(s->err, 6000));
    const char *end = strchr(line, '\n');
    if (!end) fail_msg("the summary line does not end:\n%s", line);
    char first[4096];
    snprintf(first, sizeof first, "%.*s", (int)(end - line), line);
    assert_contains(first, "allocated");
    assert_contains(first, "peak");
    assert_contains(first, "allocations");

    const char *machine = machine_line_start();
    bool machine_seen = false;
    int processes = 0;
    for (const char *at = end + 1; *at; processes++) {
        const char *next = strchr(at, '\n');
        size_t len = next ? (size_t)(next - at) : strlen(at);
        char row[1024];
        snprintf(row, sizeof row, "%.*s", (int)len, at);
        const char *pid = strstr(row, "pid ");
        at = next ? next + 1 : at + len;
        if (machine && !*at && strncmp(row, machine, strlen(machine)) == 0) {
            machine_seen = true;
            break;
        }
        if (!pid || strtol(pid + 4, NULL, 10) <= 0)
            fail_msg("a line after the summary names no \"pid N\": \"%s\"; the summary:\n%s", row,
                     line);
    }
    if (machine && !machine_seen)
        fail_msg("no last line \"%s...\" for the machine; the summary:\n%s", machine, line);
    if (processes < min_processes || processes > max_processes)
        fail_msg("%d process line(s) after the summary of %s, not %d to %d:\n%s", processes,
                 s->program, min_processes, max_processes, line);
}

/* Loads the JSON summary into Python as d (its "processes" as procs, mmt-run's pid as
 * run_pid, the program's file name as program) and evaluates each check, a Python
 * expression; prints those that are false or raise, and exits 1 if any did. Without a
 * list of processes, the checks of them are counted, not each printed. */
static const char json_checker[] =
    "import json, os, sys\n"
    "path, program, run_pid = sys.argv[1], sys.argv[2], int(sys.argv[3])\n"
    "try:\n"
    "    d = json.load(open(path))\n"
    "except Exception as e:\n"
    "    print('not JSON: %s' % e)\n"
    "    sys.exit(1)\n"
    "procs = d.get('processes') if isinstance(d, dict) else None\n"
    "failed, unread = [], 0\n"
    "for check in sys.argv[4:]:\n"
    "    if 'procs' in check and not isinstance(procs, list) and 'isinstance(procs' not in check:\n"
    "        unread += 1\n"
    "        continue\n"
    "    try:\n"
    "        ok = eval(check)\n"
    "    except Exception as e:\n"
    "        ok = False\n"
    "        check += '    (%s: %s)' % (type(e).__name__, e)\n"
    "    if not ok:\n"
    "        failed.append(check)\n"
    "if unread:\n"
    "    failed.append('(%d checks of the processes not made: there is no list of them)' % unread)\n"
    "print('\\n'.join(failed))\n"
    "sys.exit(1 if failed else 0)\n";

/* What every JSON summary holds, whatever the program. */
static const char *const json_contract[] = {
    "isinstance(d, dict)",
    "os.path.basename(d['program']) == program",
    "isinstance(d['allocator'], str) and d['allocator'] != ''",
    "all(type(d[k]) is int and d[k] >= 0 for k in "
    "('allocated', 'freed', 'peak', 'in_use_at_exit', 'allocations', 'frees'))",
    "d['run_time_seconds'] > 0",
    "isinstance(procs, list) and len(procs) >= 1",
    /* The totals are the tree's. */
    "all(d[k] == sum(p[k] for p in procs) for k in ('allocated', 'freed', 'allocations', 'frees'))",
    /* The first process is the program mmt-run started; a forked one comes after its
     * parent: the order they started in. */
    "procs[0]['ppid'] == run_pid and procs[0]['forked'] is False",
    "all(any(q['pid'] == p['ppid'] for q in procs[:i]) for i, p in enumerate(procs) if p['forked'])",
    "all(type(p['pid']) is int and p['pid'] > 0 for p in procs)",
    "all(type(p['ppid']) is int for p in procs)",
    "all(isinstance(p['comm'], str) and p['comm'] != '' for p in procs)",
    "all(isinstance(p['command'], str) and isinstance(p['forked'], bool) for p in procs)",
    "all(isinstance(p['allocator'], str) and p['allocator'] != '' for p in procs)",
    "all(type(p[k]) is int and p[k] >= 0 for p in procs for k in ('allocated', 'freed', 'peak', "
    "'in_use_at_start', 'in_use_at_exit', 'allocations', 'frees', 'reallocs'))",
    "all(p['allocated'] - p['freed'] == p['in_use_at_exit'] - p['in_use_at_start'] for p in procs)",
    "all(p['run_time_seconds'] >= 0 for p in procs)",
    NULL,
};

/* memcached: one process, that allocated. */
static const char *const memcached_json[] = {
    "len(procs) == 1",
    "procs[0]['comm'] == 'memcached'",
    "procs[0]['allocations'] > 0",
    NULL,
};

/* Redis: jemalloc is its allocator, and BGSAVE forked its one child. */
static const char *const redis_json[] = {
    "len(procs) == 2",
    "'jemalloc' in d['allocator']",
    "'jemalloc' in procs[0]['allocator']",
    "procs[0]['comm'].startswith('redis-server')",
    "procs[0]['allocations'] > 40000",
    "any(p['forked'] and p['ppid'] == procs[0]['pid'] for p in procs[1:])",
    NULL,
};

/* nginx: a master, and its one worker, forked from it, that did more than the master. */
static const char *const nginx_json[] = {
    "len(procs) == 2",
    "procs[0]['comm'] == 'nginx'",
    "'worker process' in procs[1]['command'] and procs[1]['forked'] and "
    "procs[1]['ppid'] == procs[0]['pid']",
    /* 2,000 requests are the worker's, the configuration the master's. */
    "procs[1]['allocations'] > procs[0]['allocations']",
    NULL,
};

/* Checks the JSON summary against json_contract and the server's own checks (Python
 * expressions, NULL-terminated). */
static void check_json_summary(const server_t *s, pid_t run_pid, const char *const *checks)
{
    static char json[1 << 16], out[1 << 14];
    if (read_file(s->summary, json, sizeof json) == 0)
        fail_msg("mmt-run wrote no summary into %s; stderr:\n%s", s->summary, tail_of(s->err, 4000));
    if (access(PYTHON, X_OK) != 0)
        fail_msg("%s is needed to read the summary (apt-get install python3)", PYTHON);
    char pid_text[24];
    snprintf(pid_text, sizeof pid_text, "%ld", (long)run_pid);
    const char *argv[64] = {PYTHON, "-c", json_checker, s->summary, base_name(s->program), pid_text};
    size_t argc = 6;
    for (size_t i = 0; json_contract[i]; i++) argv[argc++] = json_contract[i];
    for (size_t i = 0; checks[i] && argc + 1 < sizeof argv / sizeof argv[0]; i++)
        argv[argc++] = checks[i];
    int rc = run_to_end(argv, out, sizeof out, 60);
    if (rc != 0) {
        /* cmocka cuts a failure message at 1 KiB: the whole story goes to stderr first. */
        fprintf(stderr, "the JSON summary of %s does not hold:\n%s\nthe summary:\n%s\n", s->program,
                out, json);
        size_t first = strcspn(out, "\n");
        int more = 0;
        for (const char *at = out + first; *at; at++) more += *at == '\n' && at[1];
        fail_msg("the JSON summary of %s does not hold: %.*s (and %d more; all of them above)",
                 s->program, (int)first, out, more);
    }
}

/* ---- Policy reloads ------------------------------------------------------------------------- */

/* Whether some line of `text` holds every one of the NULL-terminated needles. */
static bool line_with_all(const char *text, const char *const *needles)
{
    for (const char *at = text; *at;) {
        const char *next = strchr(at, '\n');
        size_t len = next ? (size_t)(next - at) : strlen(at);
        bool all = true;
        for (size_t i = 0; needles[i] && all; i++) {
            const char *hit = memmem(at, len, needles[i], strlen(needles[i]));
            all = hit != NULL;
        }
        if (all) return true;
        at = next ? next + 1 : at + len;
    }
    return false;
}

/* Edits the running server's copy of high_water.lua (its mark doubled, saved by rename as
 * editors do) and checks that within 5 s a line on mmt-run's stderr says, at info level
 * and naming the process, that the policy was reloaded. */
static void edit_policy_and_see_it_reloaded(const server_t *s)
{
    static char text[1 << 16], edited[(1 << 16) + 64], err[1 << 20];
    read_file(s->policy, text, sizeof text);
    static const char mark[] = "local high = ";
    char *at = strstr(text, mark);
    if (!at) fail_msg("%s has no line \"%s...\" to edit", s->policy, mark);
    snprintf(edited, sizeof edited, "%.*s2 * %s", (int)(at - text + strlen(mark)), text,
             at + strlen(mark));
    long from = file_size(s->err);
    write_by_rename(s->policy, edited);

    static const char *const said[] = {"[info]", "policy reloaded", "pid ", NULL};
    double end = now_seconds() + 5;
    for (;;) {
        size_t n = read_file(s->err, err, sizeof err);
        if ((size_t)from <= n && line_with_all(err + from, said)) return;
        if (now_seconds() > end)
            fail_msg("no line with \"[info]\", \"policy reloaded\" and \"pid \" on the stderr of "
                     "mmt-run of %s within 5 s of the policy's edit; what it wrote since:\n%s",
                     s->program, (size_t)from <= n ? err + from : err);
        sleep_ms(50);
    }
}

/* ---- memcached ---------------------------------------------------------------------------- */

static void memcached_args(server_t *s, const char **argv, size_t max)
{
    const char *const args[] = {MEMCACHED, "-l", "127.0.0.1", "-p", s->port_text, "-U", "0",
                                "-t", "2", "-m", "64", NULL, NULL, NULL};
    size_t n = 0;
    for (; args[n]; n++) argv[n] = args[n];
    if (geteuid() == 0) { /* memcached refuses to run as root without it */
        argv[n++] = "-u";
        argv[n++] = "root";
    }
    assert_true(n < max);
    argv[n] = NULL;
}

/* Sets `count` keys to values of 100 to 10,000 random bytes, each holding "\r\n" (and
 * every fourth "\r\nEND\r\n") somewhere inside, with its index as flags, and gets each
 * back in another order byte for byte; then a multi-key get and a key never set. */
static void exercise_memcached(const server_t *s, int count)
{
    enum { MAX_KEYS = 512 };
    assert_true(count <= MAX_KEYS && count >= 3);
    static unsigned char *values[MAX_KEYS];
    static size_t sizes[MAX_KEYS];
    static char keys[MAX_KEYS][48];
    static int order[MAX_KEYS];
    static unsigned char got[10002];
    char line[512];
    conn_t *c = conn_open(s->port);
    for (int i = 0; i < count; i++) {
        sizes[i] = 100 + (size_t)(next_random() % 9901);
        values[i] = malloc(sizes[i]);
        assert_non_null(values[i]);
        fill_random(values[i], sizes[i]);
        memcpy(values[i] + next_random() % (sizes[i] - 1), "\r\n", 2);
        if (i % 4 == 0) memcpy(values[i] + next_random() % (sizes[i] - 6), "\r\nEND\r\n", 7);
        snprintf(keys[i], sizeof keys[i], "mmt-%03d-%016llx", i, (unsigned long long)next_random());
        conn_printf(c, "set %s %d 0 %zu\r\n", keys[i], i, sizes[i]);
        conn_send(c, values[i], sizes[i]);
        conn_send(c, "\r\n", 2);
        conn_line(c, line, sizeof line);
        if (strcmp(line, "STORED") != 0)
            fail_msg("set %s (%zu bytes): \"%s\"", keys[i], sizes[i], line);
        order[i] = i;
    }
    for (int i = count - 1; i > 0; i--) { /* Fisher-Yates */
        int j = (int)(next_random() % (uint64_t)(i + 1)), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (int k = 0; k < count; k++) {
        int i = order[k];
        char want[128];
        conn_printf(c, "get %s\r\n", keys[i]);
        conn_line(c, line, sizeof line);
        snprintf(want, sizeof want, "VALUE %s %d %zu", keys[i], i, sizes[i]);
        if (strcmp(line, want) != 0) fail_msg("get %s: \"%s\", not \"%s\"", keys[i], line, want);
        conn_read(c, got, sizes[i] + 2);
        if (memcmp(got, values[i], sizes[i]) != 0 || memcmp(got + sizes[i], "\r\n", 2) != 0)
            fail_msg("get %s: %zu bytes that are not those set (seed %llu)", keys[i], sizes[i],
                     (unsigned long long)seed);
        conn_line(c, line, sizeof line);
        if (strcmp(line, "END") != 0)
            fail_msg("get %s: \"%s\" after the value, not END", keys[i], line);
    }
    /* Three keys at once come back in the order asked. */
    conn_printf(c, "get %s %s %s\r\n", keys[2], keys[0], keys[1]);
    static const int three[] = {2, 0, 1};
    for (int k = 0; k < 3; k++) {
        int i = three[k];
        char want[128];
        conn_line(c, line, sizeof line);
        snprintf(want, sizeof want, "VALUE %s %d %zu", keys[i], i, sizes[i]);
        if (strcmp(line, want) != 0) fail_msg("multi-get: \"%s\", not \"%s\"", line, want);
        conn_read(c, got, sizes[i] + 2);
        if (memcmp(got, values[i], sizes[i]) != 0 || memcmp(got + sizes[i], "\r\n", 2) != 0)
            fail_msg("multi-get %s: other bytes", keys[i]);
    }
    conn_line(c, line, sizeof line);
    assert_string_equal(line, "END");
    conn_printf(c, "get mmt-never-set\r\n");
    conn_line(c, line, sizeof line);
    assert_string_equal(line, "END");
    conn_close(c);
    for (int i = 0; i < count; i++) free(values[i]);
}

static void test_servers_memcached_serves_binary_values_under_the_default_policy(void **state)
{
    (void)state;
    NEED(MEMCACHED, "memcached");
    static server_t s;
    server_init(&s, "memcached-default", MEMCACHED, false);
    start_server(&s, memcached_args);
    exercise_memcached(&s, 400);
    stop_server(&s, 0);
    check_text_summary(&s, 1, 1);
}

static void test_servers_memcached_under_high_water_is_one_process_in_the_json_summary(void **state)
{
    (void)state;
    NEED(MEMCACHED, "memcached");
    static server_t s;
    server_init(&s, "memcached-high-water", MEMCACHED, true);
    start_server(&s, memcached_args);
    pid_t run = s.run;
    exercise_memcached(&s, 400);
    stop_server(&s, 0);
    check_json_summary(&s, run, memcached_json);
}

static void test_servers_memcached_says_it_reloaded_its_edited_policy_and_serves_on(void **state)
{
    (void)state;
    NEED(MEMCACHED, "memcached");
    static server_t s;
    server_init(&s, "memcached-reload", MEMCACHED, true);
    start_server(&s, memcached_args);
    exercise_memcached(&s, 50);
    edit_policy_and_see_it_reloaded(&s);
    exercise_memcached(&s, 50);
    stop_server(&s, 0);
}

/* ---- Redis -------------------------------------------------------------------------------- */

static void redis_args(server_t *s, const char **argv, size_t max)
{
    const char *const args[] = {REDIS_SERVER, "--port", s->port_text, "--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "no", "--daemonize", "no",
                                "--dir", s->dir, NULL};
    size_t n = 0;
    for (; args[n]; n++) argv[n] = args[n];
    assert_true(n < max);
    argv[n] = NULL;
}

/* A RESP reply: its kind ('+', '-', ':', '$'), the rest of its first line, and a bulk
 * string's bytes (malloc'd, NUL-terminated; NULL for a null bulk string). */
typedef struct reply {
    char kind;
    char line[256];
    unsigned char *bulk;
    size_t len;
} reply_t;

/* Sends a command of `argc` binary-safe arguments. */
static void redis_send(conn_t *c, int argc, const char *const *argv, const size_t *lens)
{
    conn_printf(c, "*%d\r\n", argc);
    for (int i = 0; i < argc; i++) {
        size_t len = lens ? lens[i] : strlen(argv[i]);
        conn_printf(c, "$%zu\r\n", len);
        conn_send(c, argv[i], len);
        conn_send(c, "\r\n", 2);
    }
}

static void redis_reply(conn_t *c, reply_t *r)
{
    char line[sizeof r->line];
    conn_line(c, line, sizeof line);
    r->kind = line[0];
    snprintf(r->line, sizeof r->line, "%s", line + 1);
    r->bulk = NULL;
    r->len = 0;
    if (r->kind == '$') {
        long long len = atoll(r->line);
        if (len < 0) return;
        r->len = (size_t)len;
        r->bulk = malloc(r->len + 2);
        assert_non_null(r->bulk);
        conn_read(c, r->bulk, r->len + 2);
        if (memcmp(r->bulk + r->len, "\r\n", 2) != 0)
            fail_msg("a bulk string that does not end in \\r\\n");
        r->bulk[r->len] = '\0';
    } else if (r->kind != '+' && r->kind != '-' && r->kind != ':') {
        fail_msg("a reply that is not of a kind this client reads: \"%s\"", line);
    }
}

/* Sends a command of plain words and expects the status reply `want` ("+OK"). */
static void redis_expect(conn_t *c, const char *words, const char *want)
{
    char copy[256];
    const char *argv[16];
    int argc = 0;
    snprintf(copy, sizeof copy, "%s", words);
    for (char *w = strtok(copy, " "); w && argc < 16; w = strtok(NULL, " ")) argv[argc++] = w;
    redis_send(c, argc, argv, NULL);
    reply_t r;
    redis_reply(c, &r);
    char got[260];
    snprintf(got, sizeof got, "%c%s", r.kind, r.line);
    free(r.bulk);
    if (strcmp(got, want) != 0) fail_msg("redis %s: \"%s\", not \"%s\"", words, got, want);
}

/* INFO's `section` into text (malloc'd). */
static char *redis_info(conn_t *c, const char *section)
{
    const char *argv[] = {"INFO", section};
    redis_send(c, 2, argv, NULL);
    reply_t r;
    redis_reply(c, &r);
    if (r.kind != '$' || !r.bulk) fail_msg("INFO %s: \"%c%s\"", section, r.kind, r.line);
    return (char *)r.bulk;
}

/* The value of "name:" in an INFO text, into buf; fails the test if there is none. */
static const char *info_field(const char *info, const char *name, char *buf, size_t len)
{
    char key[128];
    snprintf(key, sizeof key, "\n%s:", name);
    const char *at = strstr(info, key);
    if (!at) fail_msg("no %s in INFO:\n%s", name, info);
    at += strlen(key);
    size_t n = strcspn(at, "\r\n");
    snprintf(buf, len, "%.*s", (int)n, at);
    return buf;
}

static long long info_number(const char *info, const char *name)
{
    char value[64];
    return atoll(info_field(info, name, value, sizeof value));
}

/* Sets data:000000 ... to `value_size`-byte values, `count` of them, pipelined 1,000 at a
 * time. */
static void redis_load(conn_t *c, int count, size_t value_size)
{
    static unsigned char value[4096];
    assert_true(value_size <= sizeof value);
    for (int i = 0; i < count;) {
        int batch = count - i < 1000 ? count - i : 1000;
        for (int k = 0; k < batch; k++, i++) {
            char key[32];
            snprintf(key, sizeof key, "data:%06d", i);
            memset(value, 'a' + i % 26, value_size);
            const char *argv[] = {"SET", key, (const char *)value};
            const size_t lens[] = {3, strlen(key), value_size};
            redis_send(c, 3, argv, lens);
        }
        for (int k = 0; k < batch; k++) {
            reply_t r;
            redis_reply(c, &r);
            if (r.kind != '+' || strcmp(r.line, "OK") != 0)
                fail_msg("a pipelined SET: \"%c%s\"", r.kind, r.line);
        }
    }
}

/* redis-benchmark's SET and GET; a value of a few KiB of random bytes (with "\r\n" inside)
 * set and got back byte for byte; 20,000 keys loaded; a BGSAVE (a forked child writes
 * the data) waited for and its file found. */
static void exercise_redis(const server_t *s)
{
    static char out[1 << 16];
    const char *const bench[] = {REDIS_BENCHMARK, "-p", s->port_text, "-q", "-n", "20000",
                                 "-t", "set,get", NULL};
    int rc = run_to_end(bench, out, sizeof out, 120);
    const char *rps = strstr(out, "requests per second");
    if (rc != 0 || !strstr(out, "SET: ") || !strstr(out, "GET: ") || !rps ||
        !strstr(rps + 1, "requests per second"))
        fail_msg("redis-benchmark: status %d:\n%s", rc, out);

    conn_t *c = conn_open(s->port);
    redis_expect(c, "PING", "+PONG");
    size_t size = 3000 + (size_t)(next_random() % 3000);
    unsigned char *value = malloc(size);
    assert_non_null(value);
    fill_random(value, size);
    memcpy(value + size / 2, "\r\n$-1\r\n", 7);
    const char *set[] = {"SET", "blob", (const char *)value};
    const size_t set_lens[] = {3, 4, size};
    redis_send(c, 3, set, set_lens);
    reply_t r;
    redis_reply(c, &r);
    if (r.kind != '+' || strcmp(r.line, "OK") != 0) fail_msg("SET blob: \"%c%s\"", r.kind, r.line);
    const char *get[] = {"GET", "blob"};
    redis_send(c, 2, get, NULL);
    redis_reply(c, &r);
    if (r.kind != '$' || r.len != size || memcmp(r.bulk, value, size) != 0)
        fail_msg("GET blob: %zu bytes that are not the %zu set (seed %llu)", r.len, size,
                 (unsigned long long)seed);
    free(r.bulk);
    free(value);

    redis_load(c, 20000, 100);
    redis_expect(c, "BGSAVE", "+Background saving started");
    double end = now_seconds() + 30;
    for (;;) {
        char *info = redis_info(c, "persistence");
        long long running = info_number(info, "rdb_bgsave_in_progress");
        char status[64];
        info_field(info, "rdb_last_bgsave_status", status, sizeof status);
        free(info);
        if (running == 0) {
            if (strcmp(status, "ok") != 0)
                fail_msg("BGSAVE ended with rdb_last_bgsave_status:%s", status);
            break;
        }
        if (now_seconds() > end) fail_msg("BGSAVE still in progress after 30 s");
        sleep_ms(50);
    }
    conn_close(c);
    char rdb[PATH_MAX + 16];
    snprintf(rdb, sizeof rdb, "%s/dump.rdb", s->dir);
    if (file_size(rdb) < 20000) fail_msg("BGSAVE wrote %ld bytes into %s", file_size(rdb), rdb);
}

#define NEED_REDIS()                                                                       \
    do {                                                                                   \
        NEED(REDIS_SERVER, "redis-server");                                                \
        NEED(REDIS_BENCHMARK, "redis-tools");                                              \
    } while (0)

static void test_servers_redis_serves_and_saves_under_the_default_policy(void **state)
{
    (void)state;
    NEED_REDIS();
    static server_t s;
    server_init(&s, "redis-default", REDIS_SERVER, false);
    start_server(&s, redis_args);
    exercise_redis(&s);
    stop_server(&s, 0);
    check_text_summary(&s, 2, 2); /* Redis and its BGSAVE child */
}

static void test_servers_redis_under_high_water_reports_jemalloc_and_its_bgsave_child(void **state)
{
    (void)state;
    NEED_REDIS();
    static server_t s;
    server_init(&s, "redis-high-water", REDIS_SERVER, true);
    start_server(&s, redis_args);
    pid_t run = s.run;
    exercise_redis(&s);
    stop_server(&s, 0);
    check_json_summary(&s, run, redis_json);
}

static void test_servers_redis_keeps_its_data_in_its_own_jemalloc(void **state)
{
    (void)state;
    NEED(REDIS_SERVER, "redis-server");
    /* Redis asks jemalloc what it holds (INFO memory's allocator_allocated); under
     * mmt-run its data must still be jemalloc's, counted by mmt on the way. */
    static server_t s;
    server_init(&s, "redis-jemalloc", REDIS_SERVER, false);
    start_server(&s, redis_args);
    conn_t *c = conn_open(s.port);
    char *before = redis_info(c, "memory");
    enum { KEYS = 100000, VALUE = 128 }; /* 12.8 MB of values, twice that with Redis's own */
    redis_load(c, KEYS, VALUE);
    char *after = redis_info(c, "memory");
    conn_close(c);
    char allocator[64];
    info_field(after, "mem_allocator", allocator, sizeof allocator);
    long long used[2] = {info_number(before, "used_memory"), info_number(after, "used_memory")};
    long long held[2] = {info_number(before, "allocator_allocated"),
                         info_number(after, "allocator_allocated")};
    free(before);
    free(after);
    stop_server(&s, 0);

    if (strncmp(allocator, "jemalloc", 8) != 0) fail_msg("mem_allocator:%s, not jemalloc", allocator);
    /* used_memory is Redis's own count, of the sizes the allocator gives (malloc_usable_size):
     * it shows the data arrived, whoever holds it. */
    if (used[1] - used[0] < 8 << 20)
        fail_msg("used_memory went from %lld to %lld bytes with %d keys of %d bytes", used[0],
                 used[1], KEYS, VALUE);
    if (held[1] - held[0] < 8 << 20)
        fail_msg("allocator_allocated went from %lld to %lld bytes (%s) while used_memory went "
                 "from %lld to %lld with %d keys of %d bytes: the data is not in Redis's own "
                 "allocator",
                 held[0], held[1], allocator, used[0], used[1], KEYS, VALUE);
}

static void test_servers_redis_says_it_reloaded_its_edited_policy_and_serves_on(void **state)
{
    (void)state;
    NEED(REDIS_SERVER, "redis-server");
    static server_t s;
    server_init(&s, "redis-reload", REDIS_SERVER, true);
    start_server(&s, redis_args);
    edit_policy_and_see_it_reloaded(&s);
    conn_t *c = conn_open(s.port);
    redis_load(c, 1000, 100);
    redis_expect(c, "GET data:000999", "$100");
    conn_close(c);
    stop_server(&s, 0);
}

/* ---- nginx -------------------------------------------------------------------------------- */

enum { NGINX_FILE_SIZE = 1 << 20 };
static unsigned char nginx_file[NGINX_FILE_SIZE]; /* what it serves as /file */

/* Whether user `uid` (group `gid`) can read `path`, every folder on the way included:
 * tried in a child that becomes that user. */
static bool user_can_read(uid_t uid, gid_t gid, const char *path)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0) end_child(2);
        end_child(access(path, R_OK) == 0 ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) > 1)
        fail_msg("cannot become uid %ld to try %s", (long)uid, path);
    return WEXITSTATUS(status) == 0;
}

/* "user root;\n" when nginx's worker must stay root to reach its files, else "". */
static const char *nginx_user;

/* Writes the file nginx serves, into the server's folder, and decides the worker's user. */
static void nginx_prepare(server_t *s)
{
    char html[PATH_MAX + 16], file[PATH_MAX + 32];
    snprintf(html, sizeof html, "%s/html", s->dir);
    snprintf(file, sizeof file, "%s/file", html);
    assert_int_equal(mkdir(html, 0755), 0);
    fill_random(nginx_file, sizeof nginx_file);
    FILE *f = fopen(file, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(nginx_file, 1, sizeof nginx_file, f), sizeof nginx_file);
    assert_int_equal(fclose(f), 0);

    /* As root, nginx's worker runs as nobody, which must reach the file: the test folder
     * (mkdtemp's 0700) is opened to passing through. */
    nginx_user = "";
    if (geteuid() == 0) {
        assert_int_equal(chmod(test_dir, 0711), 0);
        struct passwd *nobody = getpwnam("nobody");
        if (!nobody || !user_can_read(nobody->pw_uid, nobody->pw_gid, file)) {
            /* nobody cannot get to the file at all: a folder above it is closed to others
             * (CI runs in a chroot whose / is 0700). The worker stays root there. */
            nginx_user = "user root;\n";
            print_message("nobody cannot read %s: nginx's worker runs as root\n", file);
        }
    }
}

/* nginx's configuration for this start's port: one worker under a master, in the
 * foreground, everything it writes in its folder, errors on stderr (nginx points its
 * stderr at its error log: a file there would take the policy's lines away from
 * mmt-run's stderr). */
static void nginx_args(server_t *s, const char **argv, size_t max)
{
    static char conf[PATH_MAX + 32], text[9 * PATH_MAX];
    snprintf(conf, sizeof conf, "%s/nginx.conf", s->dir);
    snprintf(text, sizeof text,
             "%s"
             "master_process on;\n"
             "worker_processes 1;\n"
             "daemon off;\n"
             "pid %s/nginx.pid;\n"
             "error_log stderr;\n"
             "events { worker_connections 64; }\n"
             "http {\n"
             "    access_log off;\n"
             "    client_body_temp_path %s/body;\n"
             "    proxy_temp_path %s/proxy;\n"
             "    fastcgi_temp_path %s/fastcgi;\n"
             "    uwsgi_temp_path %s/uwsgi;\n"
             "    scgi_temp_path %s/scgi;\n"
             "    server {\n"
             "        listen 127.0.0.1:%d;\n"
             "        root %s/html;\n"
             "    }\n"
             "}\n",
             nginx_user, s->dir, s->dir, s->dir, s->dir, s->dir, s->dir, s->port, s->dir);
    write_in_place(conf, text);
    const char *const args[] = {NGINX, "-p", s->dir, "-c", conf, "-e", "stderr", NULL};
    size_t n = 0;
    for (; args[n]; n++) argv[n] = args[n];
    assert_true(n < max);
    argv[n] = NULL;
}

/* GET /file over HTTP/1.0 with a client of ours: status 200, its length, and the file's
 * bytes exactly. */
static void nginx_get_file(const server_t *s)
{
    conn_t *c = conn_open(s->port);
    conn_printf(c, "GET /file HTTP/1.0\r\nHost: 127.0.0.1:%d\r\n\r\n", s->port);
    size_t len;
    unsigned char *all = conn_read_all(c, &len);
    conn_close(c);
    unsigned char *body = memmem(all, len, "\r\n\r\n", 4);
    if (!body) fail_msg("no end of the headers in the %zu bytes nginx sent", len);
    body += 4;
    char head[2048];
    snprintf(head, sizeof head, "%.*s", (int)(body - all < 2000 ? body - all : 2000), all);
    if (strncmp(head, "HTTP/1.", 7) != 0 || strncmp(head + 8, " 200 ", 5) != 0)
        fail_msg("nginx answered:\n%s", head);
    char length[64];
    snprintf(length, sizeof length, "\r\nContent-Length: %d\r\n", NGINX_FILE_SIZE);
    assert_contains(head, length);
    size_t got = len - (size_t)(body - all);
    if (got != sizeof nginx_file || memcmp(body, nginx_file, sizeof nginx_file) != 0)
        fail_msg("GET /file: %zu bytes that are not the file's %zu (seed %llu)", got,
                 sizeof nginx_file, (unsigned long long)seed);
    free(all);
}

/* The file byte for byte, then ab: 2,000 requests, 4 at a time, none failed. */
static void exercise_nginx(const server_t *s)
{
    nginx_get_file(s);
    static char out[1 << 16];
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/file", s->port);
    const char *const ab[] = {AB, "-n", "2000", "-c", "4", url, NULL};
    int rc = run_to_end(ab, out, sizeof out, 120);
    if (rc != 0 || !strstr(out, "Complete requests:      2000\n") ||
        !strstr(out, "Failed requests:        0\n") || strstr(out, "Non-2xx responses"))
        fail_msg("ab: status %d:\n%s", rc, out);
    char length[64];
    snprintf(length, sizeof length, "Document Length:        %d bytes\n", NGINX_FILE_SIZE);
    assert_contains(out, length);
}

#define NEED_NGINX()                                                                       \
    do {                                                                                   \
        NEED(NGINX, "nginx-light");                                                        \
        NEED(AB, "apache2-utils");                                                         \
    } while (0)

static void test_servers_nginx_serves_a_file_byte_for_byte_under_the_default_policy(void **state)
{
    (void)state;
    NEED_NGINX();
    static server_t s;
    server_init(&s, "nginx-default", NGINX, false);
    nginx_prepare(&s);
    start_server(&s, nginx_args);
    exercise_nginx(&s);
    stop_server(&s, 0);
    check_text_summary(&s, 2, 2); /* the master and its worker */
}

static void test_servers_nginx_under_high_water_reports_its_worker_doing_the_work(void **state)
{
    (void)state;
    NEED_NGINX();
    static server_t s;
    server_init(&s, "nginx-high-water", NGINX, true);
    nginx_prepare(&s);
    start_server(&s, nginx_args);
    pid_t run = s.run;
    exercise_nginx(&s);
    stop_server(&s, 0);
    check_json_summary(&s, run, nginx_json);
}

static void test_servers_nginx_says_it_reloaded_its_edited_policy_and_serves_on(void **state)
{
    (void)state;
    NEED(NGINX, "nginx-light");
    static server_t s;
    server_init(&s, "nginx-reload", NGINX, true);
    nginx_prepare(&s);
    start_server(&s, nginx_args);
    nginx_get_file(&s);
    edit_policy_and_see_it_reloaded(&s);
    nginx_get_file(&s);
    stop_server(&s, 0);
}

/* Each test ends whatever a failure left running before the next starts. */
#define SERVER_TEST(f) cmocka_unit_test_teardown(f, end_leftovers)

int main(void)
{
    const struct CMUnitTest tests[] = {
        SERVER_TEST(test_servers_memcached_serves_binary_values_under_the_default_policy),
        SERVER_TEST(test_servers_memcached_under_high_water_is_one_process_in_the_json_summary),
        SERVER_TEST(test_servers_memcached_says_it_reloaded_its_edited_policy_and_serves_on),
        SERVER_TEST(test_servers_redis_serves_and_saves_under_the_default_policy),
        SERVER_TEST(test_servers_redis_under_high_water_reports_jemalloc_and_its_bgsave_child),
        SERVER_TEST(test_servers_redis_keeps_its_data_in_its_own_jemalloc),
        SERVER_TEST(test_servers_redis_says_it_reloaded_its_edited_policy_and_serves_on),
        SERVER_TEST(test_servers_nginx_serves_a_file_byte_for_byte_under_the_default_policy),
        SERVER_TEST(test_servers_nginx_under_high_water_reports_its_worker_doing_the_work),
        SERVER_TEST(test_servers_nginx_says_it_reloaded_its_edited_policy_and_serves_on),
    };
    return cmocka_run_group_tests_name("servers", tests, setup, teardown);
}
