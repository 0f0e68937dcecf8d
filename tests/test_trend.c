/*
 * The trend of in_use (lua/trend.c) and what policies read of it, m.eta and m.predict.
 * First the fit itself on series whose line is known: slopes and times to a limit exact,
 * with values near 2^40 and times of days of uptime, noise, a window that forgets, and
 * millions of samples. Then through real engines: a policy's m.eta and m.predict against
 * what a thread really allocates (real clocks, generous tolerances for a loaded machine),
 * flat usage, the method form, bad arguments, trend_window_s, and a reload.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>

#include "policyutil.h"
#include "trend.h"

/* ---- The fit ------------------------------------------------------------------------------- */

/* A deterministic generator (xorshift64*): the same series in every run. */
static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static double uniform(double lo, double hi)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    double u = (double)((rng_state * 2685821657736338717u) >> 11) / 9007199254740992.0;
    return lo + (hi - lo) * u;
}

#define assert_near(x, want, rel)                                                          \
    do {                                                                                   \
        double x_ = (x), want_ = (want);                                                   \
        if (!(fabs(x_ - want_) <= (rel) * fabs(want_)))                                    \
            fail_msg("%s = %.17g, expected %.17g within %g", #x, x_, want_, (double)(rel)); \
    } while (0)

/* Fits tr at `now`, failing the test if there is no line. */
static void fit(const mmt__trend_t *tr, double now, double *level, double *slope)
{
    if (!mmt__trend_fit(tr, now, level, slope)) fail_msg("no line at %.17g", now);
}

static void test_trend_fits_irregular_samples_of_a_line_exactly(void **state)
{
    (void)state;
    mmt__trend_t tr;
    mmt__trend_init(&tr, 60);
    /* y = 1e9 + 2e6 t, sampled at irregular steps from 1 ms to 0.3 s for 40 s. */
    double t = 0;
    while (t < 40) {
        mmt__trend_add(&tr, t, 1e9 + 2e6 * t);
        t += uniform(0.001, 0.3);
    }
    /* Read half a second after the newest sample: the line there, not the newest value. */
    double now = t + 0.5, level, slope;
    fit(&tr, now, &level, &slope);
    print_message("  slope %.9g (2e6), level %.12g (%.12g)\n", slope, level, 1e9 + 2e6 * now);
    assert_near(slope, 2e6, 1e-9);
    assert_near(level, 1e9 + 2e6 * now, 1e-12);
    /* 5e9 is reached at t = 2000. */
    assert_near(mmt__trend_eta(level, slope, 5e9), 2000 - now, 1e-9);
    assert_near(mmt__trend_predict(level, slope, 10), 1e9 + 2e6 * (now + 10), 1e-12);
}

static void test_trend_is_exact_near_2_to_the_40_after_months_of_uptime(void **state)
{
    (void)state;
    /* in_use about 2^40 (1 TiB) moving 3 MB/s, on a monotonic clock 116 days on: a fit
     * from raw sums of t*t and t*y is off in the fourth digit here. */
    const double t0 = 1e7, y0 = 1099511627776.0;
    mmt__trend_t tr;
    mmt__trend_init(&tr, 60);
    double t = t0;
    while (t < t0 + 50) {
        mmt__trend_add(&tr, t, y0 + 3e6 * (t - t0));
        t += uniform(0.0005, 0.05);
    }
    double level, slope;
    fit(&tr, t, &level, &slope);
    double want = y0 + 3e6 * (t - t0);
    print_message("  slope %.9g (3e6), level off by %.3g bytes\n", slope, level - want);
    assert_near(slope, 3e6, 1e-6);
    assert_near(level, want, 1e-12);
    /* 2^41 is 2^40 / 3e6 seconds from y0, about 366,504 s. */
    double eta = mmt__trend_eta(level, slope, 2 * y0);
    assert_near(eta, y0 / 3e6 - (t - t0), 1e-6);
    /* And falling from there, at 4 KB/s: a slope far under the values' magnitude. */
    mmt__trend_init(&tr, 60);
    for (int i = 0; i <= 10000; i++) mmt__trend_add(&tr, t0 + i * 0.005, y0 - 4096.0 * i * 0.005);
    fit(&tr, t0 + 50, &level, &slope);
    print_message("  falling: slope %.9g (-4096)\n", slope);
    assert_near(slope, -4096, 1e-6);
}

static void test_trend_a_flat_series_never_reaches_a_limit(void **state)
{
    (void)state;
    mmt__trend_t tr;
    mmt__trend_init(&tr, 60);
    for (int i = 0; i < 1000; i++) mmt__trend_add(&tr, 5000 + i * uniform(0.001, 0.05), 0x1p40);
    double level, slope;
    fit(&tr, 5100, &level, &slope);
    assert_true(slope == 0);
    assert_true(level == 0x1p40);
    assert_true(mmt__trend_eta(level, slope, 0x1p41) == INFINITY);
    assert_true(mmt__trend_predict(level, slope, 3600) == 0x1p40);
    assert_true(mmt__trend_predict(level, slope, INFINITY) == 0x1p40); /* not nan */
}

static void test_trend_a_falling_series_never_reaches_a_limit_and_predicts_less(void **state)
{
    (void)state;
    mmt__trend_t tr;
    mmt__trend_init(&tr, 60);
    for (double t = 0; t < 30; t += uniform(0.01, 0.1)) mmt__trend_add(&tr, t, 5e9 - 1e6 * t);
    double level, slope;
    fit(&tr, 30, &level, &slope);
    assert_near(slope, -1e6, 1e-9);
    assert_true(mmt__trend_eta(level, slope, 6e9) == INFINITY);
    /* Below the level too: the limit lies behind a falling line, not ahead of it. */
    assert_true(mmt__trend_eta(level, slope, 1e9) == INFINITY);
    assert_near(mmt__trend_predict(level, slope, 10), 5e9 - 1e6 * 40, 1e-12);
    assert_true(mmt__trend_predict(level, slope, 10) < level);
}

static void test_trend_averages_noise_around_a_slope(void **state)
{
    (void)state;
    mmt__trend_t tr;
    mmt__trend_init(&tr, 60);
    /* 1 MB/s under noise of +-5 MB, five seconds' worth, every 10 ms or so for 60 s. */
    double t = 100;
    for (; t < 160; t += uniform(0.005, 0.015))
        mmt__trend_add(&tr, t, 2e9 + 1e6 * (t - 100) + uniform(-5e6, 5e6));
    double level, slope;
    fit(&tr, t, &level, &slope);
    print_message("  slope %.6g (1e6), level %.6g (%.6g)\n", slope, level, 2e9 + 1e6 * (t - 100));
    assert_near(slope, 1e6, 0.01);
    assert_near(level, 2e9 + 1e6 * (t - 100), 0.001);
    assert_near(mmt__trend_eta(level, slope, 3e9), 1000 - (t - 100), 0.02);
}

static void test_trend_forgets_samples_older_than_its_window(void **state)
{
    (void)state;
    mmt__trend_t tr;
    mmt__trend_init(&tr, 60);
    /* Rising for 30 s, then flat. */
    double t = 1000, level, slope;
    for (; t < 1030; t += 0.01) mmt__trend_add(&tr, t, 1e9 + 1e7 * (t - 1000));
    double top = 1e9 + 1e7 * (t - 1000);
    for (; t < 1060; t += 0.01) mmt__trend_add(&tr, t, top);
    /* 30 s of flat after 30 s of rise, all in the window: still rising. */
    fit(&tr, t, &level, &slope);
    print_message("  after 30 s flat: slope %.6g, eta to +1 GB %.6g s\n", slope,
                  mmt__trend_eta(level, slope, top + 1e9));
    assert_true(slope > 0);
    assert_true(isfinite(mmt__trend_eta(level, slope, top + 1e9)));
    /* Flat for a whole window and a second more: the rise is gone, the line flat. */
    for (; t < 1091; t += 0.01) mmt__trend_add(&tr, t, top);
    fit(&tr, t, &level, &slope);
    print_message("  after 61 s flat: slope %.6g\n", slope);
    assert_true(slope == 0);
    assert_true(level == top);
    assert_true(mmt__trend_eta(level, slope, top + 1e9) == INFINITY);
    /* Nothing at all in the last window: no line. */
    assert_false(mmt__trend_fit(&tr, t + 61, &level, &slope));
}

static void test_trend_a_short_window_follows_a_change_of_direction(void **state)
{
    (void)state;
    mmt__trend_t tr;
    mmt__trend_init(&tr, 2);
    double t = 0, level, slope;
    for (; t < 10; t += 0.001) mmt__trend_add(&tr, t, 1e9 + 1e6 * t);
    for (; t < 12.5; t += 0.001) mmt__trend_add(&tr, t, 1e9 + 1e6 * 10 - 2e6 * (t - 10));
    /* 2.5 s into the fall, with a 2 s window: only the fall is in it. */
    fit(&tr, t, &level, &slope);
    assert_near(slope, -2e6, 1e-6);
}

static void test_trend_thousands_of_samples_a_second_for_an_hour_do_not_drift(void **state)
{
    (void)state;
    /* 5000 samples a second for an hour (18 million), from a clock 11 days on, in_use from
     * 2^40 rising 100 KB/s; each minute the fit must still be the line, to rounding (raw
     * sums of t*t and t*y would be 6% off after the first minute). */
    const double t0 = 1e6, y0 = 0x1p40, hz = 5000;
    mmt__trend_t tr;
    mmt__trend_init(&tr, 60);
    double worst_slope = 0, worst_level = 0;
    int fits = 0;
    for (long i = 0; i < 3600 * (long)hz; i++) {
        double s = i / hz, t = t0 + s; /* each time from i: the clock itself does not drift */
        mmt__trend_add(&tr, t, y0 + 1e5 * s);
        if (i % (60 * (long)hz) == 60 * (long)hz - 1) {
            double level, slope;
            fit(&tr, t, &level, &slope);
            double e_slope = fabs(slope / 1e5 - 1), e_level = fabs(level - (y0 + 1e5 * s));
            if (e_slope > worst_slope) worst_slope = e_slope;
            if (e_level > worst_level) worst_level = e_level;
            fits++;
        }
    }
    print_message("  18M samples, %d fits: slope off by %.3g at worst, level by %.3g bytes\n",
                  fits, worst_slope, worst_level);
    assert_int_equal(fits, 60);
    assert_true(worst_slope < 1e-6);
    assert_true(worst_level < 1024);
}

static void test_trend_has_no_line_without_two_samples_at_two_times(void **state)
{
    (void)state;
    mmt__trend_t tr;
    mmt__trend_init(&tr, 60);
    double level = -1, slope = -1;
    assert_false(mmt__trend_fit(&tr, 10, &level, &slope));
    mmt__trend_add(&tr, 10, 1e9);
    assert_false(mmt__trend_fit(&tr, 10, &level, &slope));
    for (int i = 0; i < 100; i++) mmt__trend_add(&tr, 10, 1e9 + i);
    assert_false(mmt__trend_fit(&tr, 10, &level, &slope));
    assert_true(level == -1 && slope == -1); /* left alone */
    mmt__trend_add(&tr, 11, 2e9);
    fit(&tr, 11, &level, &slope);
    assert_true(slope > 0);
    /* Not finite: dropped. */
    mmt__trend_init(&tr, 60);
    mmt__trend_add(&tr, NAN, 1);
    mmt__trend_add(&tr, INFINITY, 1);
    mmt__trend_add(&tr, 1, NAN);
    mmt__trend_add(&tr, 2, INFINITY);
    assert_false(mmt__trend_fit(&tr, 2, &level, &slope));
}

static void test_trend_eta_is_zero_past_the_limit_and_never_for_an_infinite_one(void **state)
{
    (void)state;
    mmt__trend_t tr;
    mmt__trend_init(&tr, 60);
    for (int i = 0; i <= 100; i++) mmt__trend_add(&tr, i * 0.1, 1e9 + 1e6 * i * 0.1);
    double level, slope;
    fit(&tr, 10, &level, &slope);
    assert_true(mmt__trend_eta(level, slope, 1e9) == 0);   /* passed already */
    assert_true(mmt__trend_eta(level, slope, level) == 0); /* there now */
    assert_true(mmt__trend_eta(level, slope, -INFINITY) == 0);
    assert_true(mmt__trend_eta(level, slope, INFINITY) == INFINITY);
    assert_near(mmt__trend_eta(level, slope, 1.1e9), 90, 1e-9);
    assert_true(mmt__trend_predict(level, slope, INFINITY) == INFINITY);
    assert_near(mmt__trend_predict(level, slope, -5), 1e9 + 5e6, 1e-12); /* on the line, back */
}

static void test_trend_a_sample_from_before_the_window_is_dropped(void **state)
{
    (void)state;
    mmt__trend_t tr;
    mmt__trend_init(&tr, 60);
    for (int i = 0; i <= 100; i++) mmt__trend_add(&tr, 1000 + i * 0.1, 1e9 + 1e6 * i * 0.1);
    double level, slope;
    fit(&tr, 1010, &level, &slope);
    /* A clock that went back a whole window and more: its samples would be read as the
     * oldest of the window and bend the line. */
    mmt__trend_add(&tr, 900, 9e9);
    mmt__trend_add(&tr, 949, 9e9);
    double level2, slope2;
    fit(&tr, 1010, &level2, &slope2);
    assert_true(level2 == level && slope2 == slope);
    /* One a little late, inside the window, counts: the line is the fit of all of them. */
    mmt__trend_add(&tr, 1005, 1e9 + 5e6 + 1e6);
    fit(&tr, 1010, &level2, &slope2);
    assert_true(level2 > level);
}

/* ---- Through an engine ----------------------------------------------------------------------- */

/* Timing cannot be judged under valgrind (under_valgrind, testutil.h), which runs threads
 * in turns many times slower: the tests that judge it skip there. */

enum { MiB = 1 << 20, MAX_BLOCKS = 256 };

/* What a policy logged about the trend: "<tag> t=<m.time> in_use=<m.in_use> eta=<m.eta(L)>
 * eta2=<m:eta(L)> predict=<m.predict(1)> predict2=<m:predict(1)>". */
typedef struct trend_line {
    double time, in_use, eta, eta2, predict, predict2;
} trend_line_t;

/* The policy every engine test loads: logs the line above from a task every 0.1 s
 * ("task") and from a rule at every evaluation ("rule"), with limit L. */
static const char trend_policy[] =
    "local mmt = require 'mmt'\n"
    "local L = %.17g\n"
    "local function say(tag, m)\n"
    "  mmt.log('info', '%%s t=%%.9f in_use=%%.17g eta=%%.17g eta2=%%.17g predict=%%.17g '\n"
    "    .. 'predict2=%%.17g', tag, m.time, m.in_use, m.eta(L), m:eta(L), m.predict(1),\n"
    "    m:predict(1))\n"
    "end\n"
    "mmt.every(0.1, function(m) say('task', m) end)\n"
    "mmt.rule { name = 'watch', when = function(m) say('rule', m) return false end,\n"
    "  fire = function() end }\n";

static void load_trend_policy(mmt_policy_t *p, const char *name, double limit)
{
    char text[sizeof trend_policy + 64];
    snprintf(text, sizeof text, trend_policy, limit);
    load_text(p, name, text);
}

/* The lines of `tag` ("task", "rule") in the log, at most max; returns how many. */
static int trend_lines(captured_log_t *c, const char *tag, trend_line_t *out, int max)
{
    char head[16];
    snprintf(head, sizeof head, "%s t=", tag);
    int n = 0;
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < c->count && n < max; i++) {
        trend_line_t l;
        if (strncmp(c->lines[i], head, strlen(head)) == 0 &&
            sscanf(c->lines[i] + strlen(tag), " t=%lf in_use=%lf eta=%lf eta2=%lf predict=%lf "
                   "predict2=%lf", &l.time, &l.in_use, &l.eta, &l.eta2, &l.predict,
                   &l.predict2) == 6)
            out[n++] = l;
    }
    pthread_mutex_unlock(&c->lock);
    return n;
}

/* Allocates `n` blocks of a MiB, one every `step` seconds on a schedule by the clock;
 * notes when each was made in times[]. */
static void allocate_steadily(void **blocks, double *times, int n, double step)
{
    double start = now_seconds();
    for (int i = 0; i < n; i++) {
        double due = start + i * step, wait = due - now_seconds();
        if (wait > 0) sleep_ms((unsigned)(wait * 1000));
        times[i] = now_seconds();
        blocks[i] = mmt_malloc(MiB);
    }
}

static void free_blocks(void **blocks, int n)
{
    for (int i = 0; i < n; i++) mmt_free(blocks[i]);
}

/* Bytes the blocks made by `t` hold. */
static double held_at(const double *times, int n, double t)
{
    int k = 0;
    while (k < n && times[k] <= t) k++;
    return (double)k * MiB;
}

static void test_trend_eta_and_predict_follow_a_steady_rise(void **state)
{
    (void)state;
    if (under_valgrind()) skip();
    /* 1 MiB every 20 ms (52 MB/s) for 1.6 s, a timer of 50 ms, a checkpoint at every
     * block, and a trend over 1 s: from 1.1 s in, the window holds only the rise. */
    captured_log_t *c = new_log();
    mmt_policy_options_t o = {.interval_ms = 50, .trend_window_s = 1};
    mmt_policy_t *p = new_engine(&o, c);
    mmt_mem_set_checkpoint(MiB);
    double base = (double)meminfo_now().in_use, limit = base + 200.0 * MiB;
    load_trend_policy(p, "rise.lua", limit);
    static void *blocks[MAX_BLOCKS];
    static double times[MAX_BLOCKS];
    enum { N = 80 };
    allocate_steadily(blocks, times, N, 0.02);
    mmt_policy_free(p);
    mmt_mem_set_checkpoint(0);
    free_blocks(blocks, N);
    if (log_level_count(c, MMT_LOG_ERROR)) log_dump(c);
    assert_int_equal(log_level_count(c, MMT_LOG_ERROR), 0);

    static trend_line_t lines[LOG_LINES];
    int judged = 0, tasks = 0;
    double worst_eta = 1, worst_predict = 1;
    for (int pass = 0; pass < 2; pass++) {
        int n = trend_lines(c, pass ? "rule" : "task", lines, LOG_LINES);
        for (int i = 0; i < n; i++) {
            const trend_line_t *l = &lines[i];
            /* The method form is the same function on the same evaluation. */
            assert_true(l->eta2 == l->eta);
            assert_true(l->predict2 == l->predict);
            double into = l->time - times[0];
            if (into < 1.1 || l->time > times[N - 1]) continue;
            /* The truth: what the blocks rose by over the last second. */
            double rate = held_at(times, N, l->time) - held_at(times, N, l->time - 1);
            double eta_truth = (limit - l->in_use) / rate;
            double eta_ratio = l->eta / eta_truth, predict_ratio = (l->predict - l->in_use) / rate;
            if (fabs(log(eta_ratio)) > fabs(log(worst_eta))) worst_eta = eta_ratio;
            if (fabs(log(predict_ratio)) > fabs(log(worst_predict))) worst_predict = predict_ratio;
            if (!(l->eta > 0 && isfinite(l->eta) && eta_ratio > 0.5 && eta_ratio < 2) ||
                !(l->predict > l->in_use && predict_ratio > 0.5 && predict_ratio < 2)) {
                log_dump(c);
                fail_msg("at %.3f s: eta %.3f s for %.3f s, predict(1) %.4g over in_use for "
                         "%.4g B/s", into, l->eta, eta_truth, l->predict - l->in_use, rate);
            }
            judged++;
            tasks += !pass;
        }
    }
    print_message("  %d evaluations judged (%d task runs): eta at worst %.3f of the truth, "
                  "predict(1) %.3f\n", judged, tasks, worst_eta, worst_predict);
    assert_true(tasks >= 2);
    assert_true(judged >= 10);
    free_log(c);
}

static void test_trend_flat_usage_never_reaches_a_limit(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.interval_ms = 20};
    mmt_policy_t *p = new_engine(&o, log);
    double base = (double)meminfo_now().in_use;
    load_trend_policy(p, "flat.lua", base + 1);
    sleep_ms(450);
    mmt_policy_free(p);
    static trend_line_t lines[LOG_LINES];
    int n = trend_lines(log, "task", lines, LOG_LINES);
    int m = trend_lines(log, "rule", lines + n, LOG_LINES - n);
    print_message("  %d task runs and %d rule evaluations logged\n", n, m);
    assert_true(n >= 2 && m >= 2);
    for (int i = 0; i < n + m; i++) {
        assert_true(lines[i].in_use == base);
        assert_true(lines[i].eta == INFINITY && lines[i].eta2 == INFINITY);
        assert_true(lines[i].predict == base && lines[i].predict2 == base);
    }
    free_log(log);
}

static void test_trend_a_bad_argument_is_an_error_naming_the_function(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);
    const char *path = policy_path("bad.lua");
    static const load_error_case_t cases[] = {
        {"mmt.meminfo().eta('1e9')", ":3: m.eta: the limit (bytes) must be a number, not a string"},
        {"mmt.meminfo().eta()", ":3: m.eta: the limit (bytes) must be a number, not nothing"},
        {"mmt.meminfo():eta(0/0)", ":3: m.eta: the limit (bytes) must be a number, not nan"},
        {"mmt.meminfo().predict(nil)",
         ":3: m.predict: the time ahead (seconds) must be a number, not a nil"},
        {"local m = mmt.meminfo()\nm:predict(f)",
         ":4: m.predict: the time ahead (seconds) must be a number, not a function"},
    };
    expect_load_errors(p, path, cases, sizeof cases / sizeof cases[0]);
    /* In a rule: an error of the rule, named. */
    load_text(p, "bad.lua",
              "local mmt = require 'mmt'\n"
              "mmt.rule { name = 'bad', when = function(m) return m:predict('soon') > 0 end,\n"
              "  fire = function() end }\n");
    mmt_mem_checkpoint();
    mmt_policy_free(p);
    assert_logged(log, "rule \"bad\"");
    assert_logged(log, "bad.lua:2: m.predict: the time ahead (seconds) must be a number, not a "
                       "string");
    free_log(log);
}

/* Two engines see the same usage, 20 MiB in 0.2 s and then nothing for 1.6 s: the one
 * with a 1 s window has forgotten the rise by the end, the one with 60 s still sees it. */
static void test_trend_window_s_is_honoured_a_short_window_forgets_an_early_rise(void **state)
{
    (void)state;
    if (under_valgrind()) skip();
    captured_log_t *short_log = new_log(), *long_log = new_log();
    mmt_policy_options_t so = {.interval_ms = 50, .trend_window_s = 1};
    mmt_policy_options_t lo = {.interval_ms = 50}; /* the default window, 60 s */
    mmt_policy_t *a = new_engine(&so, short_log), *b = new_engine(&lo, long_log);
    mmt_mem_set_checkpoint(MiB);
    double base = (double)meminfo_now().in_use, limit = base + 1024.0 * MiB;
    load_trend_policy(a, "short.lua", limit);
    load_trend_policy(b, "long.lua", limit);
    static void *blocks[MAX_BLOCKS];
    static double times[MAX_BLOCKS];
    enum { N = 20 };
    allocate_steadily(blocks, times, N, 0.01);
    sleep_ms(1600);
    mmt_policy_free(a);
    mmt_policy_free(b);
    mmt_mem_set_checkpoint(0);
    free_blocks(blocks, N);
    static trend_line_t lines[LOG_LINES];
    int n = trend_lines(long_log, "task", lines, LOG_LINES);
    assert_true(n >= 2);
    trend_line_t l = lines[n - 1];
    print_message("  60 s window, %.2f s after the rise: eta %.3g s\n", l.time - times[N - 1], l.eta);
    assert_true(l.time - times[N - 1] > 1.2);
    assert_true(l.eta > 0 && isfinite(l.eta));
    assert_true(l.predict > l.in_use);
    n = trend_lines(short_log, "task", lines, LOG_LINES);
    assert_true(n >= 2);
    l = lines[n - 1];
    print_message("  1 s window, %.2f s after the rise: eta %.3g s\n", l.time - times[N - 1], l.eta);
    assert_true(l.time - times[N - 1] > 1.2);
    assert_true(l.eta == INFINITY);
    assert_true(l.predict == l.in_use);
    free_log(short_log);
    free_log(long_log);
}

static void test_trend_a_reload_keeps_the_trend_and_the_file_reads_it_as_it_loads(void **state)
{
    (void)state;
    if (under_valgrind()) skip();
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.interval_ms = 50};
    mmt_policy_t *p = new_engine(&o, log);
    mmt_mem_set_checkpoint(MiB);
    double base = (double)meminfo_now().in_use;
    load_text(p, "reload.lua", "local mmt = require 'mmt'\n");
    static void *blocks[MAX_BLOCKS];
    static double times[MAX_BLOCKS];
    enum { N = 40 };
    allocate_steadily(blocks, times, N, 0.02);
    /* A new file, whose own run reads the trend the engine kept (no evaluation runs it:
     * the line is read at the time of the call). */
    char text[512];
    snprintf(text, sizeof text,
             "local mmt = require 'mmt'\n"
             "local m = mmt.meminfo()\n"
             "mmt.log('info', 'at load in_use=%%.17g eta=%%.17g predict=%%.17g', m.in_use,\n"
             "  m.eta(%.17g), m:predict(1))\n", base + 1024.0 * MiB);
    load_text(p, "reload.lua", text);
    mmt_policy_free(p);
    mmt_mem_set_checkpoint(0);
    free_blocks(blocks, N);
    double in_use = 0, eta = 0, predict = 0;
    bool found = false;
    for (int i = 0; i < log->count && !found; i++)
        found = sscanf(log->lines[i], "at load in_use=%lf eta=%lf predict=%lf", &in_use, &eta,
                       &predict) == 3;
    if (!found) log_dump(log);
    assert_true(found);
    /* 40 MiB in 0.8 s, 52 MB/s: 1 GiB is about 19 s off. */
    double rate = 40.0 * MiB / (times[N - 1] - times[0]);
    double eta_truth = (base + 1024.0 * MiB - in_use) / rate;
    print_message("  at load: eta %.3g s (%.3g), predict(1) %.3g MB over in_use (%.3g)\n", eta,
                  eta_truth, (predict - in_use) / 1e6, rate / 1e6);
    assert_true(eta > 0.5 * eta_truth && eta < 2 * eta_truth);
    assert_true(predict - in_use > 0.5 * rate && predict - in_use < 2 * rate);
    free_log(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trend_fits_irregular_samples_of_a_line_exactly),
        cmocka_unit_test(test_trend_is_exact_near_2_to_the_40_after_months_of_uptime),
        cmocka_unit_test(test_trend_a_flat_series_never_reaches_a_limit),
        cmocka_unit_test(test_trend_a_falling_series_never_reaches_a_limit_and_predicts_less),
        cmocka_unit_test(test_trend_averages_noise_around_a_slope),
        cmocka_unit_test(test_trend_forgets_samples_older_than_its_window),
        cmocka_unit_test(test_trend_a_short_window_follows_a_change_of_direction),
        cmocka_unit_test(test_trend_thousands_of_samples_a_second_for_an_hour_do_not_drift),
        cmocka_unit_test(test_trend_has_no_line_without_two_samples_at_two_times),
        cmocka_unit_test(test_trend_eta_is_zero_past_the_limit_and_never_for_an_infinite_one),
        cmocka_unit_test(test_trend_a_sample_from_before_the_window_is_dropped),
        cmocka_unit_test(test_trend_eta_and_predict_follow_a_steady_rise),
        cmocka_unit_test(test_trend_flat_usage_never_reaches_a_limit),
        cmocka_unit_test(test_trend_a_bad_argument_is_an_error_naming_the_function),
        cmocka_unit_test(test_trend_window_s_is_honoured_a_short_window_forgets_an_early_rise),
        cmocka_unit_test(test_trend_a_reload_keeps_the_trend_and_the_file_reads_it_as_it_loads),
    };
    return cmocka_run_group_tests_name("trend", tests, make_test_dir, remove_test_dir);
}
