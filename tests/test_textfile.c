/*
 * The engine's textfile (opts.export_path, MMT_EXPORT, mmt-run --export) served by the real
 * thing: Debian's prometheus-node-exporter, started here on a port of 127.0.0.1 with its
 * textfile collector alone on a folder of the test's own, scraped with curl, and the
 * scrape parsed with the official Prometheus client's parser in Python. The counters, the
 * tags and the rules are found with the values the program has; a rule's firing shows as
 * 1 and then 0, and its fires are counted, across a reload too; a reader polling the file
 * never finds a part of one; a folder that is missing, read-only or full is said once
 * and the program goes on, and the file comes back once it can; the file is written a
 * last time as the engine is freed, and by a program under mmt-run or the preload
 * library as it ends (exit handlers or _exit).
 *
 * node_exporter and curl come from the packages prometheus-node-exporter and curl: where
 * either is missing the tests say so and skip. Those that run programs under the preload
 * library skip in the sanitizer builds (testutil.h); those that need a file system of
 * their own (a tmpfs, read-only or tiny) skip, with the reason, where mount(2) is refused.
 * Programs are started with posix_spawn, not fork (spawn_program says why).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "engine.h" /* mmt__textfile_every_ms */
#include "policyutil.h"
#include "procutil.h"

#define NODE_EXPORTER "/usr/bin/prometheus-node-exporter"
#define CURL "/usr/bin/curl"
#define PYTHON "/usr/bin/python3"
#define MiB (UINT64_C(1) << 20)

static char bin_dir[PATH_MAX], mmt_run[PATH_MAX + 16], preload_lib[PATH_MAX + 32];

static int setup(void **state)
{
    if (make_test_dir(state) != 0 || !test_bin_dir(bin_dir, sizeof bin_dir)) return -1;
    snprintf(mmt_run, sizeof mmt_run, "%s/mmt-run", bin_dir);
    snprintf(preload_lib, sizeof preload_lib, "%s/libmmtmem-preload.so", bin_dir);
    return 0;
}

static int teardown(void **state)
{
    kill_everything_below();
    return remove_test_dir(state);
}

/* After each test: an exporter a failed test left running is ended, a tmpfs it left
 * mounted is taken away (else the test folder could not be removed), and the period is
 * the option's again. */
static int end_leftovers(void **state)
{
    (void)state;
    kill_everything_below();
    static const char *const mounted[] = {"ro", "full"};
    for (size_t i = 0; i < sizeof mounted / sizeof mounted[0]; i++) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s/%s", test_dir, mounted[i]);
        umount2(dir, MNT_DETACH); /* fails where nothing is mounted: nothing to do */
    }
    atomic_store(&mmt__textfile_every_ms, 0);
    return 0;
}

/* Skips unless node_exporter and curl are installed, saying which package brings them. */
static void need_exporter(void)
{
    if (access(NODE_EXPORTER, X_OK) == 0 && access(CURL, X_OK) == 0) return;
    print_message("%s or %s is not installed (apt-get install prometheus-node-exporter curl): "
                  "skipped\n", NODE_EXPORTER, CURL);
    skip();
}

/* A folder of the test's own, made afresh, into buf. */
static const char *fresh_dir(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", test_dir, name);
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", buf);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(mkdir(buf, 0755), 0);
    return buf;
}

/* ---- Programs started without fork ----------------------------------------------------------- */

/* This process has engines running while it starts node_exporter, curl and mmt-run: a
 * fork would restart their threads in the child (policy.h), which ThreadSanitizer refuses
 * ("starting new threads after multi-threaded fork"). posix_spawn runs no fork handlers:
 * the child execs at once, its signals at their defaults (procutil.h says why). */
static pid_t spawn_program(const char *const argv[], int out_fd, int err_fd)
{
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, out_fd, STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, err_fd, STDERR_FILENO);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &actions, &attr, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) fail_msg("cannot run %s: %s", argv[0], strerror(rc));
    return pid;
}

/* spawn_with_output (procutil.h) without fork. */
static pid_t spawn_to_files(const char *const argv[], const char *out_path, const char *err_path)
{
    int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(o >= 0 && e >= 0);
    pid_t pid = spawn_program(argv, o, e);
    close(o);
    close(e);
    return pid;
}

/* run_to_end (procutil.h) without fork: argv's stdout and stderr together into out;
 * returns its exit status, or 128 + the signal that ended it. */
static int run_capture(const char *const argv[], char *out, size_t len, double seconds)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/run.out", test_dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    pid_t pid = spawn_program(argv, fd, fd);
    close(fd);
    int status = wait_for_exit(pid, seconds);
    read_file(path, out, len);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ---- node_exporter and its scrape --------------------------------------------------------- */

typedef struct exporter {
    pid_t pid;
    int port;
    char err[PATH_MAX];
} exporter_t;

/* Fetches http://127.0.0.1:PORT/metrics into `path`; returns curl's exit status. */
static int scrape_to(int port, const char *path)
{
    char url[64], out[4096];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", port);
    const char *argv[] = {CURL, "-sS", "-f", "--max-time", "10", "-o", path, url, NULL};
    return run_capture(argv, out, sizeof out, 30);
}

/* Starts node_exporter with its textfile collector alone on `dir`, and waits until it
 * answers. A port taken meanwhile by another program: another port. */
static exporter_t start_exporter(const char *dir)
{
    exporter_t e;
    char out[PATH_MAX], scraped[PATH_MAX];
    snprintf(out, sizeof out, "%s/exporter.out", test_dir);
    snprintf(e.err, sizeof e.err, "%s/exporter.err", test_dir);
    snprintf(scraped, sizeof scraped, "%s/ready.txt", test_dir);
    for (int tries = 0; tries < 5; tries++) {
        e.port = free_port();
        char listen[64], textfiles[PATH_MAX + 40];
        snprintf(listen, sizeof listen, "--web.listen-address=127.0.0.1:%d", e.port);
        snprintf(textfiles, sizeof textfiles, "--collector.textfile.directory=%s", dir);
        const char *argv[] = {NODE_EXPORTER, listen, textfiles, "--collector.disable-defaults",
                              "--collector.textfile", NULL};
        e.pid = spawn_to_files(argv, out, e.err);
        double end = now_seconds() + 15;
        while (now_seconds() < end) {
            if (waitpid(e.pid, NULL, WNOHANG) == e.pid) break; /* the port was taken: again */
            if (scrape_to(e.port, scraped) == 0) return e;
            sleep_ms(50);
        }
        kill(e.pid, SIGKILL);
        waitpid(e.pid, NULL, 0);
    }
    char log[4096];
    read_file(e.err, log, sizeof log);
    fail_msg("node_exporter did not answer; its stderr:\n%s", log);
    return e;
}

static void stop_exporter(exporter_t *e)
{
    kill(e->pid, SIGTERM);
    wait_for_exit(e->pid, 10);
}

/* Prints each sample of the Prometheus text on stdin as one JSON line: [family type,
 * sample name, labels, value, timestamp]. No single quote: python_on_file quotes it. */
static const char parse_program[] =
    "import sys, json\n"
    "from prometheus_client.parser import text_string_to_metric_families as parse\n"
    "for f in parse(sys.stdin.read()):\n"
    "    for s in f.samples:\n"
    "        print(json.dumps([f.type, s.name, s.labels, s.value, s.timestamp], sort_keys=True))\n";

typedef struct parsed {
    char text[1 << 18];
} parsed_t;

/* Parses the Prometheus text at `path` into p. */
static void parse_file(const char *path, parsed_t *p)
{
    python_on_file(parse_program, path, p->text, sizeof p->text);
}

/* Scrapes the exporter and parses what it served into p. */
static void scrape(const exporter_t *e, parsed_t *p)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/scrape.txt", test_dir);
    int rc = scrape_to(e->port, path);
    if (rc != 0) fail_msg("curl of 127.0.0.1:%d failed with status %d", e->port, rc);
    parse_file(path, p);
}

/* The value of the sample `name` with `labels` (as json.dumps writes them: {} or
 * {"rule": "hot"}) in p; false if there is none. *type, if given, gets its family's. */
static bool sample(const parsed_t *p, const char *name, const char *labels, double *v,
                   char *type, size_t type_len)
{
    char needle[PATH_MAX + 1024];
    snprintf(needle, sizeof needle, "\", \"%s\", %s, ", name, labels);
    const char *at = strstr(p->text, needle);
    if (!at) return false;
    *v = strtod(at + strlen(needle), NULL);
    if (type) {
        const char *line = at;
        while (line > p->text && line[-1] != '\n') line--;
        snprintf(type, type_len, "%.*s", (int)(at - line - 2), line + 2); /* after [" */
    }
    return true;
}

/* The value of a sample that must be there. */
static double value_of(const parsed_t *p, const char *name, const char *labels)
{
    double v;
    if (!sample(p, name, labels, &v, NULL, 0))
        fail_msg("no sample %s%s in:\n%s", name, labels, p->text);
    return v;
}

/* Scrapes until the sample has the value `want` (false after `seconds`); p keeps the last
 * scrape. */
static bool scrape_until(const exporter_t *e, parsed_t *p, const char *name, const char *labels,
                         double want, double seconds)
{
    double end = now_seconds() + seconds, v;
    do {
        scrape(e, p);
        if (sample(p, name, labels, &v, NULL, 0) && v == want) return true;
        sleep_ms(50);
    } while (now_seconds() < end);
    return false;
}

/* Waits until `path` exists, for at most `seconds`. */
static bool wait_for_file(const char *path, double seconds)
{
    double end = now_seconds() + seconds;
    while (access(path, F_OK) != 0) {
        if (now_seconds() > end) return false;
        sleep_ms(10);
    }
    return true;
}

/* An engine with a timer of 20 ms (rules judged at its ticks) and a textfile. */
static mmt_policy_t *textfile_engine(const char *path, unsigned every_s, captured_log_t *log)
{
    mmt_policy_options_t o = {.interval_ms = 20, .export_path = path, .export_every_s = every_s};
    return new_engine(&o, log);
}

/* ---- Linked programs: the engine's option -------------------------------------------------- */

static void test_textfile_scrape_has_the_counters_tags_and_machine_of_the_program(void **state)
{
    (void)state;
    need_exporter();
    char dir[PATH_MAX], path[PATH_MAX + 16];
    fresh_dir(dir, sizeof dir, "counters");
    snprintf(path, sizeof path, "%s/mmt.prom", dir);
    mmt_tag_t tag = new_tag("textfile-cache", MMT_TAG_ROOT);
    void *held = mmt_malloc_in(tag, 123456);
    captured_log_t *log = new_log();
    mmt_policy_t *p = textfile_engine(path, 1, log);
    load_text(p, "calm.lua", "local mmt = require 'mmt'\n"
                             "mmt.rule { name = 'calm', metric = 'in_use', above = 2^50,\n"
                             "           fire = function() end }\n");
    assert_true(wait_for_file(path, 5)); /* written as the policy was switched to */
    exporter_t e = start_exporter(dir);
    /* Nothing here allocates through mmt until the end: the counters stand still, and the
     * scrape must have them exactly (the engine's own memory is not counted). */
    mmt_meminfo_t m = meminfo_now();
    mmt_meminfo_t in_tag;
    assert_int_equal(mmt_tag_meminfo(tag, &in_tag), 0);
    sleep_ms(1100); /* a write after the reading above */
    parsed_t *scraped = malloc(sizeof *scraped);
    scrape(&e, scraped);
    char type[32];
    double v;
    assert_true(sample(scraped, "mmt_in_use_bytes", "{}", &v, type, sizeof type));
    assert_string_equal(type, "gauge");
    assert_true(v == (double)m.in_use);
    assert_true(sample(scraped, "mmt_allocated_bytes_total", "{}", &v, type, sizeof type));
    assert_string_equal(type, "counter");
    assert_true(v == (double)m.allocated);
    assert_true(value_of(scraped, "mmt_allocations_total", "{}") == (double)m.allocations);
    assert_true(value_of(scraped, "mmt_peak_bytes", "{}") == (double)m.peak);
    assert_true(value_of(scraped, "mmt_tag_in_use_bytes", "{\"tag\": \"textfile-cache\"}") ==
                (double)in_tag.in_use);
    assert_true(in_tag.in_use >= 123456);
    assert_true(value_of(scraped, "mmt_system_memory_total_bytes", "{}") > 0);
    assert_true(sample(scraped, "mmt_rule_firing", "{\"rule\": \"calm\"}", &v, type, sizeof type));
    assert_string_equal(type, "gauge");
    assert_true(v == 0);
    assert_true(sample(scraped, "mmt_rule_fired_total", "{\"rule\": \"calm\"}", &v, type,
                       sizeof type));
    assert_string_equal(type, "counter");
    assert_true(v == 0);
    /* node_exporter read it without error, and no mmt sample carries a timestamp or a
     * label of the scraper's (job, instance). */
    assert_true(value_of(scraped, "node_textfile_scrape_error", "{}") == 0);
    char mtime_labels[PATH_MAX + 32];
    snprintf(mtime_labels, sizeof mtime_labels, "{\"file\": \"%s\"}", path);
    assert_true(value_of(scraped, "node_textfile_mtime_seconds", mtime_labels) > 0);
    for (const char *line = scraped->text; *line; line = strchr(line, '\n') + 1) {
        if (strstr(line, "\"mmt_") && (!strstr(line, ", null]") || strstr(line, "\"job\"") ||
                                       strstr(line, "\"instance\"")))
            fail_msg("a timestamp or a scraper's label: %.*s", (int)strcspn(line, "\n"), line);
        if (!strchr(line, '\n')) break;
    }
    stop_exporter(&e);
    free(scraped);
    mmt_policy_free(p);
    free_log(log);
    mmt_free(held);
}

/* Counts the rule events the engine tells. */
static _Atomic int fires, resolves;

static void count_events(const char *rule, int fired, const mmt_meminfo_t *m, void *ud)
{
    (void)rule, (void)m, (void)ud;
    atomic_fetch_add(fired ? &fires : &resolves, 1);
}

/* The rule's name holds what a label must escape: a double quote, a backslash, a line
 * feed, and a character that is not ASCII. */
#define ODD_RULE_LUA "'big \"cache\" \\\\ x\\n\xc3\xa9'"
#define ODD_RULE_JSON "{\"rule\": \"big \\\"cache\\\" \\\\ x\\n\\u00e9\"}"

static void test_textfile_rule_firing_is_one_then_zero_and_fired_total_counts(void **state)
{
    (void)state;
    need_exporter();
    char dir[PATH_MAX], path[PATH_MAX + 16];
    fresh_dir(dir, sizeof dir, "firing");
    snprintf(path, sizeof path, "%s/mmt.prom", dir);
    atomic_store(&mmt__textfile_every_ms, 100);
    mmt_tag_t tag = new_tag("textfile-hot", MMT_TAG_ROOT);
    captured_log_t *log = new_log();
    mmt_policy_t *p = textfile_engine(path, 1, log);
    atomic_store(&fires, 0);
    atomic_store(&resolves, 0);
    mmt_policy_set_event(p, count_events, NULL);
    load_text(p, "hot.lua", "local mmt = require 'mmt'\n"
                            "mmt.rule { name = " ODD_RULE_LUA ", metric = 'in_use',\n"
                            "           tag = 'textfile-hot', above = 1024 * 1024,\n"
                            "           below = 512 * 1024, fire = function() end }\n");
    assert_true(wait_for_file(path, 5));
    exporter_t e = start_exporter(dir);
    parsed_t *s = malloc(sizeof *s);
    assert_true(scrape_until(&e, s, "mmt_rule_firing", ODD_RULE_JSON, 0, 10));
    assert_true(value_of(s, "mmt_rule_fired_total", ODD_RULE_JSON) == 0);

    for (int round = 1; round <= 2; round++) {
        void *hot = mmt_malloc_in(tag, 2 * MiB);
        if (!scrape_until(&e, s, "mmt_rule_firing", ODD_RULE_JSON, 1, 10))
            fail_msg("round %d: the rule never showed firing:\n%s", round, s->text);
        assert_true(value_of(s, "mmt_rule_fired_total", ODD_RULE_JSON) == round);
        mmt_free(hot);
        if (!scrape_until(&e, s, "mmt_rule_firing", ODD_RULE_JSON, 0, 10))
            fail_msg("round %d: the rule never showed resolved:\n%s", round, s->text);
        assert_true(value_of(s, "mmt_rule_fired_total", ODD_RULE_JSON) == round);
    }
    assert_int_equal(atomic_load(&fires), 2);
    assert_int_equal(atomic_load(&resolves), 2);
    assert_true(value_of(s, "node_textfile_scrape_error", "{}") == 0);
    stop_exporter(&e);
    free(s);
    mmt_policy_free(p);
    free_log(log);
}

/* Waits until the counter reaches `want`, for at most `seconds`. */
static bool wait_count(_Atomic int *counter, int want, double seconds)
{
    double end = now_seconds() + seconds;
    while (atomic_load(counter) < want) {
        if (now_seconds() > end) return false;
        sleep_ms(5);
    }
    return true;
}

static void test_textfile_fired_total_is_carried_over_a_reload_by_rule_name(void **state)
{
    (void)state;
    need_exporter();
    char dir[PATH_MAX], path[PATH_MAX + 16];
    fresh_dir(dir, sizeof dir, "reload");
    snprintf(path, sizeof path, "%s/mmt.prom", dir);
    mmt_tag_t tag = new_tag("textfile-reload", MMT_TAG_ROOT);
    captured_log_t *log = new_log();
    /* A write an hour apart: those seen here are the switches' and the last one. */
    mmt_policy_t *p = textfile_engine(path, 3600, log);
    atomic_store(&fires, 0);
    atomic_store(&resolves, 0);
    mmt_policy_set_event(p, count_events, NULL);
    static const char kept[] =
        "local mmt = require 'mmt'\n"
        "mmt.rule { name = 'kept', metric = 'in_use', tag = 'textfile-reload',\n"
        "           above = 1024 * 1024, below = 1024, fire = function() end }\n";
    char text[1024];
    snprintf(text, sizeof text, "%smmt.rule { name = 'dropped', metric = 'in_use', above = 2^50,\n"
             "           fire = function() end }\n", kept);
    load_text(p, "reload.lua", text);
    /* Fired, resolved, fired again: twice, and firing. */
    void *hot = mmt_malloc_in(tag, 2 * MiB);
    assert_true(wait_count(&fires, 1, 5));
    mmt_free(hot);
    assert_true(wait_count(&resolves, 1, 5));
    hot = mmt_malloc_in(tag, 2 * MiB);
    assert_true(wait_count(&fires, 2, 5));

    exporter_t e = start_exporter(dir);
    parsed_t *s = malloc(sizeof *s);
    scrape(&e, s); /* the load's write: no fire yet */
    assert_true(value_of(s, "mmt_rule_fired_total", "{\"rule\": \"kept\"}") == 0);
    snprintf(text, sizeof text, "%smmt.rule { name = 'new', metric = 'in_use', above = 2^50,\n"
             "           fire = function() end }\n", kept);
    load_text(p, "reload.lua", text);
    if (!scrape_until(&e, s, "mmt_rule_fired_total", "{\"rule\": \"kept\"}", 2, 10))
        fail_msg("the reload's write did not carry the count:\n%s", s->text);
    assert_true(value_of(s, "mmt_rule_firing", "{\"rule\": \"kept\"}") == 1);
    assert_true(value_of(s, "mmt_rule_fired_total", "{\"rule\": \"new\"}") == 0);
    assert_true(value_of(s, "mmt_rule_firing", "{\"rule\": \"new\"}") == 0);
    assert_null(strstr(s->text, "dropped"));

    /* Resolved, then freed: the last write has it, and the file stays. */
    mmt_free(hot);
    assert_true(wait_count(&resolves, 2, 5));
    mmt_policy_free(p);
    parse_file(path, s);
    assert_true(value_of(s, "mmt_rule_firing", "{\"rule\": \"kept\"}") == 0);
    assert_true(value_of(s, "mmt_rule_fired_total", "{\"rule\": \"kept\"}") == 2);
    free(s);
    stop_exporter(&e);
    free_log(log);
}

/* ---- The file replaced whole ------------------------------------------------------------ */

typedef struct poller {
    const char *dir, *path;
    double until;
    int reads, partial, strangers, files;
    char first_bad[256], stranger[256];
} poller_t;

/* Reads the file again and again until p->until: each read must be a whole file, from its
 * first family to the last rule's last line; every other name in the folder must be a
 * temporary file of this process. */
static void *poll_file(void *arg)
{
    poller_t *p = arg;
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    char temp_prefix[64];
    snprintf(temp_prefix, sizeof temp_prefix, ".x.prom.tmp.%ld", (long)getpid());
    ino_t last = 0;
    static const char head[] = "# HELP mmt_allocated_bytes_total ";
    static const char tail[] = "mmt_rule_fired_total{rule=\"last\"} 0\n";
    while (now_seconds() < p->until) {
        int fd = open(p->path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            p->partial++;
            snprintf(p->first_bad, sizeof p->first_bad, "open: %s", strerror(errno));
            continue;
        }
        struct stat st;
        fstat(fd, &st);
        size_t n = 0;
        ssize_t got;
        while (n < cap && (got = read(fd, buf + n, cap - n)) > 0) n += (size_t)got;
        close(fd);
        p->reads++;
        if (st.st_ino != last) p->files++, last = st.st_ino;
        bool whole = n > sizeof head && memcmp(buf, head, sizeof head - 1) == 0 &&
                     n >= sizeof tail && memcmp(buf + n - (sizeof tail - 1), tail, sizeof tail - 1) == 0;
        if (!whole && !p->partial++)
            snprintf(p->first_bad, sizeof p->first_bad, "%zu bytes, ending \"%.*s\"", n,
                     n < 60 ? (int)n : 60, buf + (n < 60 ? 0 : n - 60));
        DIR *d = opendir(p->dir);
        for (struct dirent *e; d && (e = readdir(d));) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, "x.prom") ||
                !strcmp(e->d_name, temp_prefix))
                continue;
            if (!p->strangers++) snprintf(p->stranger, sizeof p->stranger, "%s", e->d_name);
        }
        if (d) closedir(d);
    }
    free(buf);
    return NULL;
}

static void test_textfile_is_replaced_whole_while_a_reader_polls_it(void **state)
{
    (void)state;
    need_exporter();
    char dir[PATH_MAX], path[PATH_MAX + 16];
    fresh_dir(dir, sizeof dir, "atomic");
    snprintf(path, sizeof path, "%s/x.prom", dir);
    atomic_store(&mmt__textfile_every_ms, 5);
    captured_log_t *log = new_log();
    mmt_policy_t *p = textfile_engine(path, 1, log);
    /* 300 rules: a file of about 40 KiB, more than one write(2) of a careless writer. */
    load_text(p, "many.lua", "local mmt = require 'mmt'\n"
                             "for i = 1, 300 do\n"
                             "  mmt.rule { name = 'rule-' .. i, metric = 'in_use', above = 2^50,\n"
                             "             fire = function() end }\n"
                             "end\n"
                             "mmt.rule { name = 'last', metric = 'in_use', above = 2^50,\n"
                             "           fire = function() end }\n");
    assert_true(wait_for_file(path, 5));
    exporter_t e = start_exporter(dir);
    poller_t poller = {.dir = dir, .path = path, .until = now_seconds() + 2};
    pthread_t reader;
    assert_int_equal(pthread_create(&reader, NULL, poll_file, &poller), 0);
    parsed_t *s = malloc(sizeof *s);
    for (int i = 0; i < 5; i++) { /* node_exporter reads it meanwhile, without an error */
        scrape(&e, s);
        assert_true(value_of(s, "node_textfile_scrape_error", "{}") == 0);
        assert_true(value_of(s, "mmt_rule_fired_total", "{\"rule\": \"last\"}") == 0);
    }
    pthread_join(reader, NULL);
    print_message("%d reads of %d files\n", poller.reads, poller.files);
    if (poller.partial) fail_msg("%d reads of %d found a part of the file: %s", poller.partial,
                                 poller.reads, poller.first_bad);
    if (poller.strangers) fail_msg("the folder had %s", poller.stranger);
    assert_true(poller.files >= 10); /* the file was replaced, many times */
    assert_int_equal(log_level_count(log, MMT_LOG_WARN), 0);
    free(s);
    stop_exporter(&e);
    mmt_policy_free(p);
    free_log(log);
}

/* ---- Folders it cannot write ---------------------------------------------------------------- */

/* The warning a failed write logs, for `path` in `dir`: "textfile PATH not written: ..." */
static void failure_text(char *buf, size_t len, const char *path)
{
    snprintf(buf, len, "textfile %s not written: ", path);
}

/* Counts the log's warnings about the textfile; the first into `first`. */
static int textfile_warnings(captured_log_t *log, const char *path, char *first, size_t len)
{
    char prefix[PATH_MAX + 64];
    failure_text(prefix, sizeof prefix, path);
    int n = 0;
    pthread_mutex_lock(&log->lock);
    for (int i = 0; i < log->count; i++) {
        if (log->levels[i] != MMT_LOG_WARN || strncmp(log->lines[i], prefix, strlen(prefix)) != 0)
            continue;
        if (!n++) snprintf(first, len, "%s", log->lines[i]);
    }
    pthread_mutex_unlock(&log->lock);
    return n;
}

/* The program goes on while the textfile fails: its allocations, and its policy's rules
 * judged at the ticks. */
static void program_goes_on(mmt_tag_t tag)
{
    int before = atomic_load(&fires);
    void *hot = mmt_malloc_in(tag, 2 * MiB);
    assert_true(wait_count(&fires, before + 1, 5));
    mmt_free(hot);
}

static const char hot_rule[] = "local mmt = require 'mmt'\n"
                               "mmt.rule { name = 'hot', metric = 'in_use', tag = '%s',\n"
                               "           above = 1024 * 1024, below = 1024, fire = function() end }\n";

/* Waits 300 ms of writes every 20 ms, and checks that they were said once, with `cause`. */
static void said_once(captured_log_t *log, const char *path, const char *cause)
{
    sleep_ms(300);
    char first[LOG_LINE] = "";
    int n = textfile_warnings(log, path, first, sizeof first);
    if (n != 1) {
        log_dump(log);
        fail_msg("%d warnings about %s, not 1", n, path);
    }
    if (!strstr(first, cause)) fail_msg("\"%s\" does not say \"%s\"", first, cause);
}

static void test_textfile_missing_folder_is_said_once_and_written_once_it_is_there(void **state)
{
    (void)state;
    need_exporter();
    char dir[PATH_MAX], missing[PATH_MAX + 16], path[PATH_MAX + 32], temp[2 * PATH_MAX];
    fresh_dir(dir, sizeof dir, "late");
    snprintf(missing, sizeof missing, "%s/folder", dir);
    snprintf(path, sizeof path, "%s/x.prom", missing);
    atomic_store(&mmt__textfile_every_ms, 20);
    mmt_tag_t tag = new_tag("textfile-late", MMT_TAG_ROOT);
    captured_log_t *log = new_log();
    mmt_policy_t *p = textfile_engine(path, 1, log);
    atomic_store(&fires, 0);
    mmt_policy_set_event(p, count_events, NULL);
    char text[512];
    snprintf(text, sizeof text, hot_rule, "textfile-late");
    load_text(p, "late.lua", text);
    snprintf(temp, sizeof temp, "cannot create %s/.x.prom.tmp.%ld: No such file or directory",
             missing, (long)getpid());
    said_once(log, path, temp);
    program_goes_on(tag);
    assert_int_equal(mkdir(missing, 0755), 0);
    assert_true(wait_for_file(path, 5));
    char again[PATH_MAX + 64];
    snprintf(again, sizeof again, "textfile %s written again", path);
    assert_true(wait_for_log(log, again, 5000));
    exporter_t e = start_exporter(missing);
    parsed_t *s = malloc(sizeof *s);
    scrape(&e, s);
    assert_true(value_of(s, "mmt_rule_fired_total", "{\"rule\": \"hot\"}") == 1);
    free(s);
    stop_exporter(&e);
    mmt_policy_free(p);
    free_log(log);
}

/* Mounts a tmpfs of its own on `dir` with `flags` and `options`; false, having said why,
 * where mount(2) is refused (no CAP_SYS_ADMIN, a container that forbids it). */
static bool mount_tmpfs(const char *dir, unsigned long flags, const char *options)
{
    if (mount("tmpfs", dir, "tmpfs", flags, options) == 0) return true;
    print_message("mount(2) of a tmpfs on %s refused (%s): skipped\n", dir, strerror(errno));
    return false;
}

static void test_textfile_read_only_folder_is_said_once_and_the_program_goes_on(void **state)
{
    (void)state;
    char dir[PATH_MAX], path[PATH_MAX + 16];
    fresh_dir(dir, sizeof dir, "ro");
    if (!mount_tmpfs(dir, MS_RDONLY, "size=1m")) skip();
    snprintf(path, sizeof path, "%s/x.prom", dir);
    atomic_store(&mmt__textfile_every_ms, 20);
    mmt_tag_t tag = new_tag("textfile-ro", MMT_TAG_ROOT);
    captured_log_t *log = new_log();
    mmt_policy_t *p = textfile_engine(path, 1, log);
    atomic_store(&fires, 0);
    mmt_policy_set_event(p, count_events, NULL);
    char text[512];
    snprintf(text, sizeof text, hot_rule, "textfile-ro");
    load_text(p, "ro.lua", text);
    said_once(log, path, ": Read-only file system (tried again every 0.02 s)");
    program_goes_on(tag);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(mount("tmpfs", dir, "tmpfs", MS_REMOUNT, "size=1m"), 0); /* writable */
    assert_true(wait_for_file(path, 5));
    mmt_policy_free(p);
    umount2(dir, MNT_DETACH);
    free_log(log);
}

static void test_textfile_full_disk_is_said_once_and_leaves_no_temporary_file(void **state)
{
    (void)state;
    char dir[PATH_MAX], path[PATH_MAX + 16], filler[PATH_MAX + 16];
    fresh_dir(dir, sizeof dir, "full");
    if (!mount_tmpfs(dir, 0, "size=16k")) skip();
    snprintf(path, sizeof path, "%s/x.prom", dir);
    snprintf(filler, sizeof filler, "%s/filler", dir);
    int fd = open(filler, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    char block[4096] = {0};
    while (write(fd, block, sizeof block) > 0) {
    }
    close(fd);
    atomic_store(&mmt__textfile_every_ms, 20);
    mmt_tag_t tag = new_tag("textfile-full", MMT_TAG_ROOT);
    captured_log_t *log = new_log();
    mmt_policy_t *p = textfile_engine(path, 1, log);
    atomic_store(&fires, 0);
    mmt_policy_set_event(p, count_events, NULL);
    char text[512];
    snprintf(text, sizeof text, hot_rule, "textfile-full");
    load_text(p, "full.lua", text);
    said_once(log, path, ": No space left on device (tried again every 0.02 s)");
    program_goes_on(tag);
    DIR *d = opendir(dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "filler"))
            fail_msg("%s was left in the full folder", e->d_name);
    closedir(d);
    assert_int_equal(unlink(filler), 0);
    assert_true(wait_for_file(path, 5));
    mmt_policy_free(p);
    umount2(dir, MNT_DETACH);
    free_log(log);
}

/* The in_use the textfile at `path` holds now, or -1 if it cannot be read. */
static double file_in_use(const char *path)
{
    char text[1 << 16];
    read_file(path, text, sizeof text);
    const char *at = strstr(text, "\nmmt_in_use_bytes ");
    return at ? strtod(at + strlen("\nmmt_in_use_bytes "), NULL) : -1;
}

static void test_textfile_a_forked_child_leaves_the_file_to_its_parent(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED(); /* the child's engine starts a thread after fork (policy.h) */
    char dir[PATH_MAX], path[PATH_MAX + 16];
    fresh_dir(dir, sizeof dir, "fork");
    snprintf(path, sizeof path, "%s/x.prom", dir);
    atomic_store(&mmt__textfile_every_ms, 20);
    captured_log_t *log = new_log();
    mmt_policy_t *p = textfile_engine(path, 1, log);
    load_text(p, "calm.lua", "local mmt = require 'mmt'\n"
                             "mmt.rule { name = 'calm', metric = 'in_use', above = 2^50,\n"
                             "           fire = function() end }\n");
    assert_true(wait_for_file(path, 5));
    fflush(NULL);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        /* 64 MiB in use in the child alone: a file with them would be the child's. */
        void *big = mmt_malloc(64 * MiB);
        sleep_ms(500); /* 25 periods of its engine's thread */
        mmt_free(big);
        end_child(0);
    }
    char temp[PATH_MAX + 64];
    snprintf(temp, sizeof temp, "%s/.x.prom.tmp.%ld", dir, (long)child);
    double end = now_seconds() + 0.6;
    int reads = 0;
    while (now_seconds() < end) {
        double in_use = file_in_use(path);
        if (in_use >= (double)(64 * MiB)) fail_msg("the child wrote the file: in use %.0f", in_use);
        if (access(temp, F_OK) == 0) fail_msg("the child made %s", temp);
        reads++;
        sleep_ms(2);
    }
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_true(reads > 10);
    assert_true(file_in_use(path) >= 0); /* the parent's, still written */
    mmt_policy_free(p);
    free_log(log);
}

/* ---- Programs under the preload library ------------------------------------------------------ */

static void test_textfile_mmtrun_exports_a_running_python_and_a_last_time_at_its_exit(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    need_exporter();
    char dir[PATH_MAX], path[PATH_MAX + 16], policy[PATH_MAX], summary[PATH_MAX], out[PATH_MAX],
        err[PATH_MAX];
    fresh_dir(dir, sizeof dir, "python");
    snprintf(path, sizeof path, "%s/py.prom", dir);
    test_path(policy, sizeof policy, "big.lua");
    test_path(summary, sizeof summary, "summary.json");
    test_path(out, sizeof out, "python.out");
    test_path(err, sizeof err, "python.err");
    write_in_place(policy, "local mmt = require 'mmt'\n"
                           "mmt.rule { name = 'big', metric = 'in_use', above = 20 * mmt.MiB,\n"
                           "           below = 10 * mmt.MiB, fire = function() end }\n");
    /* 32 MB held for about 4 s, in 8 MB steps: CPython's small objects go through malloc
     * too (PYTHONMALLOC=malloc). */
    const char *argv[] = {mmt_run, "--policy", policy, "--export", path, "--every", "1",
                          "--report", "json", "--out", summary, "--", PYTHON, "-c",
                          "import time\n"
                          "keep = []\n"
                          "for i in range(4):\n"
                          "    keep.append(bytearray(8000000))\n"
                          "    time.sleep(0.3)\n"
                          "time.sleep(4)\n",
                          NULL};
    setenv("PYTHONMALLOC", "malloc", 1);
    pid_t pid = spawn_to_files(argv, out, err);
    unsetenv("PYTHONMALLOC");
    exporter_t e = start_exporter(dir);
    parsed_t *s = malloc(sizeof *s);
    bool firing = scrape_until(&e, s, "mmt_rule_firing", "{\"rule\": \"big\"}", 1, 15);
    bool running = waitpid(pid, NULL, WNOHANG) == 0;
    if (!firing) {
        char text[4096];
        read_file(err, text, sizeof text);
        fail_msg("no scrape showed the rule firing; mmt-run's stderr:\n%s", text);
    }
    assert_true(running); /* seen while the program ran */
    double running_in_use = value_of(s, "mmt_in_use_bytes", "{}");
    assert_true(running_in_use >= 32e6);
    assert_true(value_of(s, "mmt_allocations_total", "{}") > 1000);
    assert_true(value_of(s, "mmt_rule_fired_total", "{\"rule\": \"big\"}") == 1);
    int status = wait_for_exit(pid, 60);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* The last write, as the program ended: what the report says it left in use. */
    char got[256];
    python_on_file("import sys, json; print(json.load(sys.stdin)[\"in_use_at_exit\"])", summary,
                   got, sizeof got);
    parse_file(path, s);
    double final_in_use = value_of(s, "mmt_in_use_bytes", "{}");
    if (final_in_use != strtod(got, NULL))
        fail_msg("the file's last in_use %.0f, the report's at exit %s", final_in_use, got);
    assert_true(final_in_use < running_in_use);
    scrape(&e, s); /* still served once the program has gone */
    assert_true(value_of(s, "mmt_in_use_bytes", "{}") == final_in_use);
    free(s);
    stop_exporter(&e);
}

static void test_textfile_preload_without_a_policy_writes_it_at__exit(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    char dir[PATH_MAX], path[PATH_MAX + 16], env_path[PATH_MAX + 32], env_lib[PATH_MAX + 64];
    fresh_dir(dir, sizeof dir, "exit");
    snprintf(path, sizeof path, "%s/exit.prom", dir);
    snprintf(env_path, sizeof env_path, "MMT_EXPORT=%s", path);
    snprintf(env_lib, sizeof env_lib, "LD_PRELOAD=%s", preload_lib);
    /* No policy: the first periodic write would be 15 s after the start, long after this
     * program has ended by os._exit (the library's _exit): only that write can be there. */
    const char *argv[] = {"/usr/bin/env", env_lib, env_path, "MMT_EXPORT_EVERY=abc",
                          "PYTHONMALLOC=malloc", PYTHON, "-c",
                          "import os, time\n"
                          "x = bytearray(5000000)\n"
                          "time.sleep(0.3)\n"
                          "os._exit(0)\n",
                          NULL};
    char out[8192];
    assert_int_equal(run_capture(argv, out, sizeof out, 60), 0);
    assert_contains(out, "mmt: MMT_EXPORT_EVERY=abc: not a number of seconds from 1 to 86400; "
                         "using 15");
    assert_int_equal(access(path, F_OK), 0);
    parsed_t *s = malloc(sizeof *s);
    parse_file(path, s);
    assert_true(value_of(s, "mmt_in_use_bytes", "{}") >= 5e6);
    assert_null(strstr(s->text, "mmt_rule_"));
    free(s);
}

static void test_textfile_mmtrun_refuses_a_bad_export_or_every_before_the_program_starts(void **state)
{
    (void)state;
    char dir[PATH_MAX], good[PATH_MAX + 16];
    fresh_dir(dir, sizeof dir, "args");
    snprintf(good, sizeof good, "%s/x.prom", dir);
    static const struct {
        const char *export_path, *every, *said;
    } cases[] = {
        {"GOOD", "0", "mmt-run: --every \"0\": not a number of seconds from 1 to 86400"},
        {"GOOD", "1x", "mmt-run: --every \"1x\": not a number of seconds from 1 to 86400"},
        {"GOOD", "86401", "mmt-run: --every \"86401\": not a number of seconds from 1 to 86400"},
        {NULL, "5", "mmt-run: --every \"5\": it goes with --export"},
        {"", NULL, "mmt-run: --export \"\": the file name is empty"},
        {"/nonexistent-mmt-folder/x.prom", NULL,
         "mmt-run: --export /nonexistent-mmt-folder/x.prom: no folder /nonexistent-mmt-folder: "
         "No such file or directory"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *argv[12];
        int n = 0;
        argv[n++] = mmt_run;
        if (cases[i].export_path) {
            argv[n++] = "--export";
            argv[n++] = strcmp(cases[i].export_path, "GOOD") == 0 ? good : cases[i].export_path;
        }
        if (cases[i].every) {
            argv[n++] = "--every";
            argv[n++] = cases[i].every;
        }
        argv[n++] = "--";
        argv[n++] = "/bin/echo";
        argv[n++] = "the program ran";
        argv[n] = NULL;
        char out[4096];
        int rc = run_capture(argv, out, sizeof out, 30);
        if (rc != 2 || !strstr(out, cases[i].said) || strstr(out, "the program ran"))
            fail_msg("case %zu: exit %d, output:\n%s", i, rc, out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_textfile_scrape_has_the_counters_tags_and_machine_of_the_program, end_leftovers),
        cmocka_unit_test_teardown(test_textfile_rule_firing_is_one_then_zero_and_fired_total_counts, end_leftovers),
        cmocka_unit_test_teardown(test_textfile_fired_total_is_carried_over_a_reload_by_rule_name, end_leftovers),
        cmocka_unit_test_teardown(test_textfile_is_replaced_whole_while_a_reader_polls_it, end_leftovers),
        cmocka_unit_test_teardown(test_textfile_missing_folder_is_said_once_and_written_once_it_is_there, end_leftovers),
        cmocka_unit_test_teardown(test_textfile_read_only_folder_is_said_once_and_the_program_goes_on, end_leftovers),
        cmocka_unit_test_teardown(test_textfile_full_disk_is_said_once_and_leaves_no_temporary_file, end_leftovers),
        cmocka_unit_test_teardown(test_textfile_a_forked_child_leaves_the_file_to_its_parent, end_leftovers),
        cmocka_unit_test_teardown(test_textfile_mmtrun_exports_a_running_python_and_a_last_time_at_its_exit, end_leftovers),
        cmocka_unit_test_teardown(test_textfile_preload_without_a_policy_writes_it_at__exit, end_leftovers),
        cmocka_unit_test_teardown(test_textfile_mmtrun_refuses_a_bad_export_or_every_before_the_program_starts, end_leftovers),
    };
    return cmocka_run_group_tests_name("textfile", tests, setup, teardown);
}
