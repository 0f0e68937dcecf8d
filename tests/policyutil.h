/*
 * Helpers for the policy engine tests: policy files in a fresh temporary directory
 * (written by atomic rename or in place, as editors do), a log that records every message
 * for assertions, and waiting with a deadline.
 */
#ifndef MMT_POLICYUTIL_H
#define MMT_POLICYUTIL_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mmt/policy.h"
#include "testutil.h"

static char test_dir[64];

static inline int make_test_dir(void **state)
{
    (void)state;
    snprintf(test_dir, sizeof test_dir, "/tmp/mmt-test-XXXXXX");
    return mkdtemp(test_dir) ? 0 : -1;
}

static inline int remove_test_dir(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", test_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A path in the test directory; the result lives until the next call with the same buf. */
static inline const char *test_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", test_dir, name);
    return buf;
}

static inline void write_in_place(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* Writes a temporary file beside `path`, then renames it over `path`: how editors save. */
static inline void write_by_rename(const char *path, const char *text)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%.*s.tmp~", PATH_MAX - 8, path);
    write_in_place(tmp, text);
    assert_int_equal(rename(tmp, path), 0);
}

static inline double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* ---- A log that keeps every message ------------------------------------------------------ */

enum { LOG_LINES = 512, LOG_LINE = 2048 };

typedef struct captured_log {
    pthread_mutex_t lock;
    char lines[LOG_LINES][LOG_LINE];
    int levels[LOG_LINES];
    double times[LOG_LINES];
    int count;
} captured_log_t;

static inline void capture(int level, const char *message, void *ud)
{
    captured_log_t *c = ud;
    pthread_mutex_lock(&c->lock);
    if (c->count < LOG_LINES) {
        snprintf(c->lines[c->count], LOG_LINE, "%s", message);
        c->levels[c->count] = level;
        c->times[c->count] = now_seconds();
        c->count++;
    }
    pthread_mutex_unlock(&c->lock);
    if (getenv("MMT_TEST_VERBOSE")) fprintf(stderr, "  log[%d] %s\n", level, message);
}

static inline captured_log_t *new_log(void)
{
    captured_log_t *c = calloc(1, sizeof *c);
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

static inline void free_log(captured_log_t *c)
{
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* Forgets every message (the log holds LOG_LINES: a test that counts a steady stream
 * clears it first). */
static inline void log_clear(captured_log_t *c)
{
    pthread_mutex_lock(&c->lock);
    c->count = 0;
    pthread_mutex_unlock(&c->lock);
}

/* How many messages contain `needle`. */
static inline int log_count(captured_log_t *c, const char *needle)
{
    int n = 0;
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < c->count; i++)
        if (strstr(c->lines[i], needle)) n++;
    pthread_mutex_unlock(&c->lock);
    return n;
}

/* How many messages were logged at `level` (MMT_LOG_ERROR, ...). */
static inline int log_level_count(captured_log_t *c, int level)
{
    int n = 0;
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < c->count; i++)
        if (c->levels[i] == level) n++;
    pthread_mutex_unlock(&c->lock);
    return n;
}

/* When the first message containing `needle` arrived, or -1. */
static inline double log_time(captured_log_t *c, const char *needle)
{
    double t = -1;
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < c->count && t < 0; i++)
        if (strstr(c->lines[i], needle)) t = c->times[i];
    pthread_mutex_unlock(&c->lock);
    return t;
}

/* Prints the whole log: for failure messages. */
static inline void log_dump(captured_log_t *c)
{
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < c->count; i++) fprintf(stderr, "  log[%d] %s\n", c->levels[i], c->lines[i]);
    pthread_mutex_unlock(&c->lock);
}

/* Waits until some message contains `needle`, for at most timeout_ms. */
static inline bool wait_for_log(captured_log_t *c, const char *needle, unsigned timeout_ms)
{
    double end = now_seconds() + timeout_ms / 1000.0;
    while (log_count(c, needle) == 0) {
        if (now_seconds() > end) return false;
        sleep_ms(2);
    }
    return true;
}

#define assert_logged(c, needle)                                                           \
    do {                                                                                   \
        if (log_count((c), (needle)) == 0) {                                               \
            log_dump(c);                                                                   \
            fail_msg("nothing logged contains \"%s\"", (needle));                          \
        }                                                                                  \
    } while (0)

/* An engine with its log captured; explicit checkpoints only, so tests decide when rules
 * run (mmt_mem_checkpoint) unless they start a timer. */
static inline mmt_policy_t *new_engine(const mmt_policy_options_t *opts, captured_log_t *log)
{
    mmt_policy_t *p = mmt_policy_new(opts);
    assert_non_null(p);
    mmt_policy_set_log(p, capture, log);
    mmt_mem_set_checkpoint(0);
    return p;
}


/* The path of `name` in the test's directory, in a buffer the next call reuses. */
static inline const char *policy_path(const char *name)
{
    static char path_buf[PATH_MAX];
    return test_path(path_buf, sizeof path_buf, name);
}

/* Writes `text` to the file `name` and loads it; fails the test if it does not load. */
static inline void load_text(mmt_policy_t *p, const char *name, const char *text)
{
    const char *path = policy_path(name);
    write_in_place(path, text);
    if (mmt_policy_load(p, path) != 0) fail_msg("load failed: %s", mmt_policy_error(p));
}

/* A policy body and the error its load must give (after the file's path). */
typedef struct load_error_case {
    const char *body;
    const char *error;
} load_error_case_t;

/* Loads each case's body, after `local mmt = require 'mmt'` and `local f = function() end`
 * (so that the body starts at line 3), from the file `path`, and fails the test unless the
 * load fails with an error that starts with the path and holds the case's text. */
static inline void expect_load_errors(mmt_policy_t *p, const char *path,
                                      const load_error_case_t *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char text[1024];
        snprintf(text, sizeof text, "local mmt = require 'mmt'\nlocal f = function() end\n%s\n",
                 cases[i].body);
        write_in_place(path, text);
        assert_int_equal(mmt_policy_load(p, path), MMT_ELOAD);
        const char *err = mmt_policy_error(p);
        if (strncmp(err, path, strlen(path)) != 0 || !strstr(err, cases[i].error))
            fail_msg("case %zu: error \"%s\", expected \"%s%s\"", i, err, path, cases[i].error);
    }
}

#endif
