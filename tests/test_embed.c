/*
 * Programs that carry a Lua of their own. Debian's redis-server embeds Lua 5.1 and exports
 * its lua_* functions; under mmt-run it serves a benchmark, a binary value byte for byte
 * and its own Lua scripts, with the default policy, with high_water.lua, and while its
 * policy is edited, broken, removed and written again. A host of ours that links Debian's
 * Lua 5.1 and libmmtmem.so runs both Lua codes, interleaved, plainly and under mmt-run.
 * The libraries neither export nor import a Lua symbol, and without a usable LuaJIT a
 * policy fails to load with the reason while the program runs and is counted.
 *
 * The redis tests need redis-server and redis-tools (they skip, saying so, without them);
 * the host needs liblua5.1-0-dev to build. Both kinds run programs under the preload
 * library, or a host whose Lua would be LuaJIT's without RTLD_DEEPBIND: they skip in the
 * sanitizer builds (testutil.h).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "policyutil.h"
#include "procutil.h"

static char bin_dir[PATH_MAX], mmt_run[PATH_MAX + 16], high_water[PATH_MAX + 64];

/* mmt-run processes the tests started, killed at the end if a failed test left one
 * running (mmt-run then sends its program SIGTERM). */
static pid_t started[16];
static int nstarted;

static int setup(void **state)
{
    if (make_test_dir(state) != 0) return -1;
    ssize_t n = readlink("/proc/self/exe", bin_dir, sizeof bin_dir - 1);
    if (n <= 0) return -1;
    bin_dir[n] = '\0';
    *strrchr(bin_dir, '/') = '\0';
    snprintf(mmt_run, sizeof mmt_run, "%s/mmt-run", bin_dir);
    return find_source_in(bin_dir, "policies/high_water.lua", high_water, sizeof high_water) ? 0 : -1;
}

static int teardown(void **state)
{
    for (int i = 0; i < nstarted; i++) {
        char path[64], cmdline[256] = "";
        snprintf(path, sizeof path, "/proc/%ld/cmdline", (long)started[i]);
        FILE *f = fopen(path, "r");
        if (f) {
            size_t got = fread(cmdline, 1, sizeof cmdline - 1, f);
            cmdline[got] = '\0';
            fclose(f);
        }
        if (strstr(cmdline, "mmt-run")) kill(started[i], SIGKILL);
    }
    return remove_test_dir(state);
}

/* Runs a shell command (printf-style), its stdout and stderr into out; returns its exit
 * status, or 128 + the signal that ended it. */
static int sh(char *out, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int sh(char *out, size_t len, const char *fmt, ...)
{
    char command[8192], cmd[8300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(command, sizeof command, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "( %s ) 2>&1", command);
    fflush(NULL);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = 0, got;
    while (n + 1 < len && (got = fread(out + n, 1, len - 1 - n, p)) > 0) n += got;
    out[n] = '\0';
    char drain[4096];
    while (fread(drain, 1, sizeof drain, p) > 0) {
    }
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The figure after "name": in a JSON object, -1 if none. */
static long long json_number(const char *json, const char *name)
{
    char key[64];
    snprintf(key, sizeof key, "\"%s\":", name);
    const char *at = strstr(json, key);
    return at ? atoll(at + strlen(key)) : -1;
}

/* Waits at most `seconds` for the file at `path` to contain `needle` after its first
 * `from` bytes; returns the offset just past it, or -1. */
static long wait_for_text_after(const char *path, long from, const char *needle, double seconds)
{
    static char text[1 << 20];
    double end = now_seconds() + seconds;
    for (;;) {
        read_file(path, text, sizeof text);
        const char *at = (size_t)from <= strlen(text) ? strstr(text + from, needle) : NULL;
        if (at) return (long)(at - text) + (long)strlen(needle);
        if (now_seconds() > end) return -1;
        sleep_ms(50);
    }
}

static bool wait_for_text(const char *path, const char *needle, double seconds)
{
    return wait_for_text_after(path, 0, needle, seconds) >= 0;
}

/* ---- Redis -------------------------------------------------------------------------------- */

static bool have_redis(void)
{
    if (system("{ command -v redis-server && command -v redis-cli && "
               "command -v redis-benchmark; } > /dev/null 2>&1") == 0)
        return true;
    fprintf(stderr, "  redis-server, redis-cli or redis-benchmark is not installed (apt-get "
                    "install redis-server redis-tools): skipped\n");
    return false;
}

#define NEED_REDIS()                                                                       \
    do {                                                                                   \
        SKIP_IF_SANITIZED();                                                               \
        if (!have_redis()) skip();                                                         \
    } while (0)

typedef struct redis {
    pid_t pid; /* mmt-run's */
    int port;
    char out[600], err[600], summary[600]; /* redis's log, mmt's lines, mmt-run's JSON */
} redis_t;

/* Starts `mmt-run POLICY_ARGS --report json --out SUMMARY -- redis-server ...` (policy_args
 * NULL-terminated, may be empty) on a free port, and returns once redis answers PING.
 * Another port is tried if the one chosen was taken in between. */
static void start_redis(redis_t *r, const char *name, const char *const *policy_args)
{
    snprintf(r->out, sizeof r->out, "%s/%s.out", test_dir, name);
    snprintf(r->err, sizeof r->err, "%s/%s.err", test_dir, name);
    snprintf(r->summary, sizeof r->summary, "%s/%s.json", test_dir, name);
    for (int attempt = 1;; attempt++) {
        r->port = free_port();
        char port[16];
        snprintf(port, sizeof port, "%d", r->port);
        const char *argv[40] = {mmt_run};
        int argc = 1;
        for (size_t i = 0; policy_args[i]; i++) argv[argc++] = policy_args[i];
        const char *const rest[] = {"--report", "json", "--out", r->summary, "--",
                                    "redis-server", "--port", port, "--bind", "127.0.0.1",
                                    "--save", "", "--appendonly", "no", "--dir", test_dir,
                                    NULL};
        for (size_t i = 0; rest[i]; i++) argv[argc++] = rest[i];
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            int o = open(r->out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            int e = open(r->err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (o < 0 || e < 0) _exit(120);
            dup2(o, STDOUT_FILENO);
            dup2(e, STDERR_FILENO);
            struct rlimit no_core = {0, 0};
            setrlimit(RLIMIT_CORE, &no_core);
            execv(mmt_run, (char **)argv);
            _exit(121);
        }
        r->pid = pid;
        if (nstarted < (int)(sizeof started / sizeof started[0])) started[nstarted++] = pid;

        double end = now_seconds() + 30;
        for (;;) {
            int status;
            if (waitpid(pid, &status, WNOHANG) == pid) {
                static char log[8192], err[8192];
                read_file(r->out, log, sizeof log);
                read_file(r->err, err, sizeof err);
                if (strstr(log, "Address already in use") && attempt < 5) break;
                fail_msg("redis-server under mmt-run ended before answering: %s %d\n"
                         "stderr:\n%s\nredis's log:\n%s",
                         WIFEXITED(status) ? "exit status" : "signal",
                         WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), err, log);
            }
            char out[256];
            if (sh(out, sizeof out, "timeout 10 redis-cli -p %d ping", r->port) == 0 &&
                strcmp(out, "PONG\n") == 0)
                return;
            if (now_seconds() > end) {
                kill(pid, SIGKILL); /* mmt-run sends redis SIGTERM */
                waitpid(pid, &status, 0);
                fail_msg("redis-server did not answer on port %d in 30 s", r->port);
            }
            sleep_ms(50);
        }
    }
}

/* Drives redis: redis-benchmark's SET and GET, then 64 KiB of every byte value set and
 * got back byte for byte, then a script in Redis's own Lua that reads it. */
static void exercise_redis(const redis_t *r)
{
    static char out[65536];
    int rc = sh(out, sizeof out, "timeout 120 redis-benchmark -p %d -q -n 20000 -t set,get", r->port);
    if (rc != 0 || !strstr(out, "SET: ") || !strstr(out, "GET: ") ||
        !strstr(strstr(out, "requests per second") + 1, "requests per second"))
        fail_msg("redis-benchmark: status %d:\n%s", rc, out);

    char value[600], back[600];
    snprintf(value, sizeof value, "%s/value", test_dir);
    snprintf(back, sizeof back, "%s/value.back", test_dir);
    static unsigned char bytes[65536], got[65536 + 2];
    for (size_t i = 0; i < sizeof bytes; i++) bytes[i] = (unsigned char)(i * 7 + 3);
    FILE *f = fopen(value, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, sizeof bytes, f), sizeof bytes);
    assert_int_equal(fclose(f), 0);
    rc = sh(out, sizeof out, "timeout 30 redis-cli -p %d -x set blob < '%s'", r->port, value);
    if (rc != 0 || strcmp(out, "OK\n") != 0) fail_msg("redis-cli set: status %d: %s", rc, out);
    rc = sh(out, sizeof out, "timeout 30 redis-cli -p %d --raw get blob > '%s'", r->port, back);
    if (rc != 0) fail_msg("redis-cli get: status %d: %s", rc, out);
    f = fopen(back, "rb");
    assert_non_null(f);
    size_t n = fread(got, 1, sizeof got, f);
    fclose(f);
    /* --raw ends the value with a newline of its own. */
    if (n != sizeof bytes + 1 || memcmp(got, bytes, sizeof bytes) != 0 || got[sizeof bytes] != '\n')
        fail_msg("redis-cli get gave %zu bytes back, not the %zu set", n, sizeof bytes);

    rc = sh(out, sizeof out,
            "timeout 30 redis-cli -p %d eval \"local s = redis.call('get', KEYS[1]); return "
            "{#s, (string.gsub('a-b-c', '-', '+')), redis.sha1hex('abc')}\" 1 blob",
            r->port);
    if (rc != 0 || strcmp(out, "65536\na+b+c\na9993e364706816aba3e25717850c26c9cd0d89d\n") != 0)
        fail_msg("redis's own Lua: status %d:\n%s", rc, out);
}

/* Waits for mmt-run to end with status 0 and checks its summary: the program's name and
 * at least `min_allocations` (the benchmark's 40,000 requests make far more). */
static void check_summary(const redis_t *r, long long min_allocations)
{
    int status = wait_for_exit(r->pid, 60);
    static char err[1 << 16], json[4096];
    read_file(r->err, err, sizeof err);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("mmt-run: %s %d; stderr:\n%s", WIFEXITED(status) ? "exit status" : "signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), err);
    read_file(r->summary, json, sizeof json);
    if (!strstr(json, "{\"program\":\"redis-server\",") ||
        json_number(json, "allocations") < min_allocations)
        fail_msg("mmt-run's summary: %s\nstderr:\n%s", json, err);
}

static void shutdown_redis(const redis_t *r)
{
    char out[1024];
    sh(out, sizeof out, "timeout 30 redis-cli -p %d shutdown nosave", r->port);
}

static void test_embed_redis_server_serves_under_mmt_run_with_the_default_policy(void **state)
{
    (void)state;
    NEED_REDIS();
    redis_t r;
    const char *const no_policy[] = {NULL};
    start_redis(&r, "redis-default", no_policy);
    exercise_redis(&r);
    shutdown_redis(&r);
    check_summary(&r, 40000);
}

static void test_embed_redis_server_serves_under_mmt_run_with_high_water(void **state)
{
    (void)state;
    NEED_REDIS();
    redis_t r;
    const char *const policy[] = {"--policy", high_water, NULL};
    start_redis(&r, "redis-high-water", policy);
    exercise_redis(&r);
    shutdown_redis(&r);
    check_summary(&r, 40000);
}

static void test_embed_redis_server_survives_its_policy_edited_broken_removed_and_rewritten(
    void **state)
{
    (void)state;
    NEED_REDIS();
    char policy[600];
    snprintf(policy, sizeof policy, "%s/live.lua", test_dir);
    write_in_place(policy, "local mmt = require 'mmt'\n"
                           "mmt.every(0.05, function(m) mmt.log('info', 'EMBED ONE') end)\n");
    redis_t r;
    const char *const args[] = {"--policy", policy, "--interval", "20", NULL};
    start_redis(&r, "redis-live", args);
    if (!wait_for_text(r.err, "EMBED ONE", 30)) fail_msg("the first policy never ran");

    /* Saved by rename, as editors do, with a rule that fires in a running Redis. */
    write_by_rename(policy, "local mmt = require 'mmt'\n"
                            "mmt.rule { name = 'embed-any', metric = 'in_use', above = 1,\n"
                            "  fire = function(m) mmt.log('warn', 'EMBED TWO FIRED %s',\n"
                            "    (string.gsub(mmt.bytes(m.in_use), ' ', '_'))) end }\n"
                            "mmt.every(0.05, function(m) mmt.log('info', 'EMBED TWO') end)\n");
    exercise_redis(&r);
    if (!wait_for_text(r.err, "EMBED TWO FIRED ", 30) || !wait_for_text(r.err, "EMBED TWO\n", 30))
        fail_msg("the edited policy never ran");

    /* Broken: reported, and the running one stays. */
    write_by_rename(policy, "local mmt = require 'mmt'\nlocal x = = 1\n");
    long at = wait_for_text_after(r.err, 0, "live.lua:2: unexpected symbol near '='", 30);
    if (at < 0) fail_msg("the broken edit was not reported");
    if (wait_for_text_after(r.err, at, "EMBED TWO\n", 30) < 0)
        fail_msg("the running policy stopped after a broken edit");

    /* Removed, then written anew in place. */
    assert_int_equal(unlink(policy), 0);
    sleep_ms(300);
    write_in_place(policy, "local mmt = require 'mmt'\n"
                           "mmt.every(0.05, function(m) mmt.log('info', 'EMBED THREE') end)\n");
    if (!wait_for_text(r.err, "EMBED THREE", 30)) fail_msg("the rewritten policy never ran");
    exercise_redis(&r);

    /* SIGTERM to mmt-run reaches redis, which ends cleanly. */
    assert_int_equal(kill(r.pid, SIGTERM), 0);
    check_summary(&r, 80000);
}

/* ---- A host of ours with Lua 5.1 -------------------------------------------------------- */

/* The policy e2e_lua_host expects: it computes 21 and 7 in LuaJIT (bit is LuaJIT's). */
static const char host_policy[] =
    "local mmt = require 'mmt'\n"
    "mmt.rule { name = 'host-big', metric = 'in_use', above = 16 * mmt.MiB, below = 8 * mmt.MiB,\n"
    "  fire = function(m)\n"
    "    local _, n = string.gsub(string.rep('ab', 21), 'b', 'c')\n"
    "    mmt.call('fired', n)\n"
    "  end,\n"
    "  resolve = function(m) mmt.call('resolved', bit.bxor(5, 2)) end }\n";

static const char host_output[] =
    "round 1: host Lua right, policy fired with 21 and resolved with 7\n"
    "round 2: host Lua right, policy fired with 21 and resolved with 7\n"
    "round 3: host Lua right, policy fired with 21 and resolved with 7\n"
    "round 4: host Lua right, policy fired with 21 and resolved with 7\n"
    "round 5: host Lua right, policy fired with 21 and resolved with 7\n"
    "done\n";

/* The host is built only where Debian's Lua 5.1 is installed (premake5.lua). */
static bool have_host(void)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/e2e_lua_host", bin_dir);
    if (access(path, X_OK) == 0) return true;
    fprintf(stderr, "  %s was not built: liblua5.1-0-dev was not installed when premake ran "
                    "(apt-get install liblua5.1-0-dev, then premake again): skipped\n", path);
    return false;
}

#define NEED_HOST()                                                                        \
    do {                                                                                   \
        SKIP_IF_SANITIZED();                                                               \
        if (!have_host()) skip();                                                          \
    } while (0)

static void test_embed_host_with_lua_5_1_runs_its_lua_and_a_policy_through_libmmtmem_so(
    void **state)
{
    (void)state;
    NEED_HOST();
    char policy[600], out[8192];
    snprintf(policy, sizeof policy, "%s/host.lua", test_dir);
    write_in_place(policy, host_policy);
    /* It links both libraries: each is found at its start. */
    assert_int_equal(sh(out, sizeof out, "readelf -d '%s/e2e_lua_host' | grep NEEDED", bin_dir), 0);
    assert_contains(out, "[libmmtmem.so.0." MMT__STR(MMT_VERSION_MINOR) "]");
    assert_contains(out, "[liblua5.1.so.0]");
    int rc = sh(out, sizeof out, "timeout 60 '%s/e2e_lua_host' '%s'", bin_dir, policy);
    if (rc != 0) fail_msg("e2e_lua_host: status %d:\n%s", rc, out);
    assert_string_equal(out, host_output);
}

static void test_embed_host_with_lua_5_1_runs_under_mmt_run(void **state)
{
    (void)state;
    NEED_HOST();
    char policy[600], summary[600], out[8192], json[4096];
    snprintf(policy, sizeof policy, "%s/host.lua", test_dir);
    write_in_place(policy, host_policy);
    snprintf(summary, sizeof summary, "%s/host.json", test_dir);
    /* Two engines, each with LuaJIT: mmt-run's policy in the preload library, the host's. */
    int rc = sh(out, sizeof out,
                "timeout 60 '%s' --policy '%s' --report json --out '%s' -- '%s/e2e_lua_host' "
                "'%s' 2> '%s/host.err'",
                mmt_run, high_water, summary, bin_dir, policy, test_dir);
    char err[8192], path[700];
    snprintf(path, sizeof path, "%s/host.err", test_dir);
    read_file(path, err, sizeof err);
    if (rc != 0) fail_msg("mmt-run e2e_lua_host: status %d:\n%s%s", rc, out, err);
    assert_string_equal(out, host_output);
    read_file(summary, json, sizeof json);
    /* Its five 24 MiB blocks went through the preload library. */
    if (json_number(json, "peak") < 24 << 20 || json_number(json, "allocations") < 5)
        fail_msg("mmt-run's summary: %s", json);
}

/* ---- The libraries and LuaJIT ----------------------------------------------------------- */

static void test_embed_libraries_neither_export_nor_import_lua_symbols(void **state)
{
    (void)state;
    static char out[1 << 18];
    const char *const files[] = {"shared/libmmtmem.so", "libmmtmem-preload.so", "mmt-run"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        assert_int_equal(sh(out, sizeof out, "nm -D '%s/%s' | awk '{ print $NF }'", bin_dir, files[i]), 0);
        for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"))
            if (strncmp(line, "lua_", 4) == 0 || strncmp(line, "luaL_", 5) == 0 ||
                strncmp(line, "luaopen_", 8) == 0 || strncmp(line, "luaJIT_", 7) == 0)
                fail_msg("%s has %s in its dynamic symbols", files[i], line);
        assert_int_equal(sh(out, sizeof out, "readelf -d '%s/%s'", bin_dir, files[i]), 0);
        if (strstr(out, "luajit")) fail_msg("%s needs LuaJIT to start:\n%s", files[i], out);
    }
}

/* Makes test_dir/NAME/libluajit-5.1.so.2: an empty file, or a library that lacks all but
 * lua_newstate. Returns the folder. */
static const char *fake_luajit(const char *name, bool library, char *dir, size_t len)
{
    char out[4096], file[700];
    snprintf(dir, len, "%s/%s", test_dir, name);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(file, sizeof file, "%s/libluajit-5.1.so.2", dir);
    if (!library) {
        write_in_place(file, "");
        return dir;
    }
    char src[700];
    snprintf(src, sizeof src, "%s/fake.c", dir);
    write_in_place(src, "void *lua_newstate(void *f, void *ud);\n"
                        "void *lua_newstate(void *f, void *ud) { (void)f; (void)ud; return 0; }\n");
    if (sh(out, sizeof out, "cc -shared -fPIC -Wl,-soname,libluajit-5.1.so.2 -o '%s' '%s'", file, src) != 0)
        fail_msg("cannot build the fake LuaJIT:\n%s", out);
    return dir;
}

static void test_embed_without_a_usable_luajit_a_policy_fails_to_load_and_counting_goes_on(
    void **state)
{
    (void)state;
    static char out[16384];
    char dir[600], report[700];
    struct {
        const char *name;
        bool library;
        const char *why; /* what dlerror says, after the file's name */
    } cases[] = {
        {"empty", false, "file too short"},
        {"partial", true, "undefined symbol: lua_close"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fake_luajit(cases[i].name, cases[i].library, dir, sizeof dir);
        /* mmt-run loads the policy itself first: the reason, and exit status 2. */
        int rc = sh(out, sizeof out, "LD_LIBRARY_PATH='%s' '%s' --policy '%s' -- true", dir,
                    mmt_run, high_water);
        if (rc != 2 || !strstr(out, "cannot load LuaJIT (libluajit-5.1.so.2): ") ||
            !strstr(out, cases[i].why))
            fail_msg("%s: mmt-run: status %d:\n%s", cases[i].name, rc, out);

        /* A program under the preload library runs, says why, and is counted. */
        if (MMT_TEST_SANITIZED) continue;
        snprintf(report, sizeof report, "%s/report.json", dir);
        rc = sh(out, sizeof out,
                "LD_LIBRARY_PATH='%s' LD_PRELOAD='%s/libmmtmem-preload.so' MMT_POLICY='%s' "
                "MMT_REPORT=json MMT_OUT='%s' sh -c 'echo ran; exit 3'",
                dir, bin_dir, high_water, report);
        if (rc != 3 || !strstr(out, "ran\n"))
            fail_msg("%s: the program under the preload library: status %d:\n%s", cases[i].name,
                     rc, out);
        if (!strstr(out, "cannot load LuaJIT (libluajit-5.1.so.2): ") || !strstr(out, cases[i].why))
            fail_msg("%s: the preload library did not say why:\n%s", cases[i].name, out);
        static char json[4096];
        read_file(report, json, sizeof json);
        if (json_number(json, "allocations") < 1) fail_msg("%s: report: %s", cases[i].name, json);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embed_libraries_neither_export_nor_import_lua_symbols),
        cmocka_unit_test(test_embed_redis_server_serves_under_mmt_run_with_the_default_policy),
        cmocka_unit_test(test_embed_redis_server_serves_under_mmt_run_with_high_water),
        cmocka_unit_test(
            test_embed_redis_server_survives_its_policy_edited_broken_removed_and_rewritten),
        cmocka_unit_test(test_embed_host_with_lua_5_1_runs_its_lua_and_a_policy_through_libmmtmem_so),
        cmocka_unit_test(test_embed_host_with_lua_5_1_runs_under_mmt_run),
        cmocka_unit_test(test_embed_without_a_usable_luajit_a_policy_fails_to_load_and_counting_goes_on),
    };
    return cmocka_run_group_tests_name("embed", tests, setup, teardown);
}
