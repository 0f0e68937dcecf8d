/*
 * The engine's two timing guarantees, measured the way a user would see them: `m.rate`
 * at every evaluation (timer ticks and allocation checkpoints) against the rate a thread
 * really drives in_use at, and mmt.every tasks running at their own period whatever the
 * timer's interval. Real LuaJIT, real threads, real clocks: tolerances leave room for a
 * loaded two-core machine, and every test prints what it measured.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>

#include "policyutil.h"

/* Timing cannot be judged under valgrind (under_valgrind, testutil.h), which runs threads
 * in turns many times slower: there these tests skip (the sanitizer builds still run them). */

/* ---- Driving in_use at a known rate ------------------------------------------------------ */

/* The driver moves in_use by CHUNK at every step, and with checkpoints every 64 KiB the
 * engine evaluates at every fourth step: like a program that allocates steadily, its
 * checkpoints come at a regular beat. The step is a little longer than 1/4 of 6.25 ms (a
 * checkpoint every 6.25 ms would be 8 to a 50 ms tick), so the checkpoints' place between
 * two ticks slides by about 0.1 ms a tick and takes every value in 3.2 s: a checkpoint
 * just before a tick, just after, and everything between. */
enum { CHUNK = 16384, MAX_BLOCKS = 4096, MAX_TRACE = 16384 };
#define STEP (CHUNK / 10.24e6 * (1 + 1 / 512.0)) /* seconds: 10.22 MB/s */

/* A thread that moves in_use by CHUNK every STEP, up in even phases and down in odd ones,
 * on a schedule by the clock (a late step is made up at once). It keeps a trace of what it
 * held when, the truth the engine's rate is judged against. */
typedef struct driver {
    double rate, phase;   /* bytes per second; seconds per phase */
    int phases;
    long phase_steps;     /* steps per phase */
    double start;         /* monotonic seconds, set by the thread */
    pthread_t thread;
    _Atomic bool started;
    void *blocks[MAX_BLOCKS];
    size_t nblocks;
    double trace_t[MAX_TRACE], trace_x[MAX_TRACE]; /* seconds after start, bytes held */
    long trace_behind[MAX_TRACE]; /* steps behind its schedule at that step's wake-up */
    size_t ntrace;
} driver_t;

/* Set on the driver's thread: evaluations there are checkpoints, others the timer's ticks. */
static _Thread_local bool on_driver;

/* How many blocks the driver holds after step j. */
static size_t driver_blocks(const driver_t *d, long j)
{
    long k = j / d->phase_steps, into = j % d->phase_steps;
    if (k >= d->phases) return d->phases % 2 ? (size_t)d->phase_steps : 0;
    return (size_t)(k % 2 == 0 ? into : d->phase_steps - into);
}

static void sleep_until(double when)
{
    struct timespec ts = {(time_t)when, (long)((when - floor(when)) * 1e9)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
    }
}

/* Adds to the trace: from now the driver holds `blocks`. Noted before the allocation or
 * free that makes it so, so that a checkpoint inside that call finds it noted. */
static void note(driver_t *d, size_t blocks, long behind)
{
    if (d->ntrace == MAX_TRACE) return;
    d->trace_t[d->ntrace] = now_seconds() - d->start;
    d->trace_x[d->ntrace] = (double)blocks * CHUNK;
    d->trace_behind[d->ntrace] = behind;
    d->ntrace++;
}

static void *driver_main(void *arg)
{
    driver_t *d = arg;
    on_driver = true;
    d->start = now_seconds();
    atomic_store(&d->started, true);
    long last = d->phases * d->phase_steps, behind = 0;
    for (long j = 0;;) {
        size_t want = driver_blocks(d, j);
        if (want == d->nblocks) note(d, want, behind);
        for (; d->nblocks < want && d->nblocks < MAX_BLOCKS; d->nblocks++) {
            note(d, d->nblocks + 1, behind);
            d->blocks[d->nblocks] = mmt_malloc(CHUNK);
        }
        for (; d->nblocks > want; d->nblocks--) {
            note(d, d->nblocks - 1, behind);
            mmt_free(d->blocks[d->nblocks - 1]);
        }
        if (j >= last) break;
        sleep_until(d->start + (j + 1) * STEP);
        long now = (long)((now_seconds() - d->start) / STEP);
        behind = now - (j + 1);
        j = now > j ? now : j + 1;
        if (j > last) j = last;
    }
    while (d->nblocks > 0) mmt_free(d->blocks[--d->nblocks]);
    return NULL;
}

static driver_t *driver_start(double phase, int phases)
{
    driver_t *d = calloc(1, sizeof *d);
    assert_non_null(d);
    d->rate = CHUNK / STEP;
    d->phase_steps = lround(phase / STEP);
    d->phase = d->phase_steps * STEP;
    d->phases = phases;
    assert_int_equal(pthread_create(&d->thread, NULL, driver_main, d), 0);
    while (!atomic_load(&d->started)) sleep_ms(1);
    return d;
}

/* What the driver held at `t` seconds after its start (its trace is a step function). */
static double driver_held(const driver_t *d, double t)
{
    size_t lo = 0, hi = d->ntrace;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (d->trace_t[mid] <= t) lo = mid + 1;
        else hi = mid;
    }
    return lo == 0 ? 0 : d->trace_x[lo - 1];
}

/* The most steps the driver was behind its schedule while it made its trace from `from`
 * to `to` seconds after its start, and at the first point after `to`: a driver the
 * scheduler kept waiting notes that only once it runs again, and what it allocates then
 * (checkpoints included) comes before that note. */
static long driver_behind(const driver_t *d, double from, double to)
{
    long most = 0;
    for (size_t i = 0; i < d->ntrace && d->trace_t[i] - to <= 0.5; i++) {
        if (d->trace_t[i] < from) continue;
        if (d->trace_behind[i] > most) most = d->trace_behind[i];
        if (d->trace_t[i] > to) break;
    }
    return most;
}

/* ---- Recording every evaluation ------------------------------------------------------------ */

enum { MAX_RECORDS = 16384 };

/* What a rule saw at each evaluation, filled by the host action `record`: evaluations are
 * serialised by the engine, and the test reads the records once the engine is freed. */
typedef struct record {
    double time;  /* monotonic seconds when the rule ran */
    double rate;  /* m.rate */
    double stamp; /* m.time, where the policy gave it through `stamp` (else 0) */
    bool tick;    /* on the engine's thread; else at a checkpoint on the driver's */
} record_t;

static record_t records[MAX_RECORDS];
static _Atomic int nrecords;

static _Atomic int64_t pending_stamp; /* m.time in µs, given just before `record` */

static int64_t record_rate(int64_t rate, void *ud)
{
    (void)ud;
    int i = atomic_fetch_add(&nrecords, 1);
    double stamp = (double)atomic_exchange(&pending_stamp, 0) / 1e6;
    if (i < MAX_RECORDS)
        records[i] = (record_t){now_seconds(), (double)rate, stamp, !on_driver};
    return 0;
}

static int64_t record_stamp(int64_t micros, void *ud)
{
    (void)ud;
    atomic_store(&pending_stamp, micros);
    return 0;
}

static const char recording_policy[] =
    "local mmt = require 'mmt'\n"
    "mmt.rule { name = 'record', when = function(m) mmt.call('record', m.rate) return false end,\n"
    "  fire = function() end }\n";

/* The same, with the evaluation's own time: a span measured by the rule's callbacks would
 * include how long each evaluation took to reach its rule (the first one's Lua warm-up,
 * milliseconds under valgrind), which the engine's rate rightly does not. */
static const char stamped_policy[] =
    "local mmt = require 'mmt'\n"
    "mmt.rule { name = 'record', when = function(m)\n"
    "  mmt.call('stamp', math.floor(m.time * 1e6)) mmt.call('record', m.rate) return false end,\n"
    "  fire = function() end }\n";

/* How one kind of evaluation (ticks or checkpoints) compared with the truth. */
typedef struct judged {
    int checked, wrong_sign, outside;
    int unsteady;     /* not judged: the driver itself was late in that window */
    double worst;     /* rate / truth - 1, the largest in size */
    double worst_at;  /* its time, seconds after the driver's start */
    double worst_rate, worst_truth;
    double worst_nominal; /* the largest |rate / nominal - 1| */
} judged_t;

/* Within this fraction of the truth, at every judged evaluation. Measured here: within 6%
 * with a 50 ms timer (one 16 KiB step is 3% of its window, and a driver up to an eighth
 * of a window late moves in_use unevenly inside it, where the engine's span and the
 * judge's differ by a few ms), 3% with 100 ms, 1% without a timer. A rate that took its
 * span from a checkpoint just before the tick read 0, or -17 or +60 times the truth. */
#define TOLERANCE 0.4

/*
 * Judges every record made while the driver ran: a record `settle` seconds or more into a
 * phase (its window lies inside the phase) must have the phase's sign and be within
 * TOLERANCE of the truth, the driver's change over the last `window` seconds divided by
 * `window`. Records nearer a change are not judged: their windows straddle it. Nor are
 * those whose last `settle` seconds saw the driver more than an eighth of a window behind
 * its schedule, kept waiting by the scheduler: it moved in_use unevenly then, and the
 * engine's span and this judge's differ by a few ms; they are counted.
 */
static void judge(const driver_t *d, double window, double settle, judged_t *ticks,
                  judged_t *checkpoints)
{
    *ticks = *checkpoints = (judged_t){0};
    long allowed = (long)(window / STEP / 8);
    int n = atomic_load(&nrecords);
    if (n > MAX_RECORDS) n = MAX_RECORDS;
    for (int i = 0; i < n; i++) {
        const record_t *r = &records[i];
        double t = r->time - d->start;
        int k = (int)(t / d->phase);
        if (t < 0 || k >= d->phases || t - k * d->phase < settle) continue;
        judged_t *j = r->tick ? ticks : checkpoints;
        if (driver_behind(d, t - settle, t) > allowed) {
            j->unsteady++;
            continue;
        }
        double truth = (driver_held(d, t) - driver_held(d, t - window)) / window;
        double nominal = k % 2 == 0 ? d->rate : -d->rate;
        double error = r->rate / truth - 1;
        j->checked++;
        if (nominal > 0 ? !(r->rate > 0) : !(r->rate < 0)) j->wrong_sign++;
        if (!(fabs(error) <= TOLERANCE)) j->outside++;
        if (!(fabs(error) <= fabs(j->worst))) {
            j->worst = error;
            j->worst_at = t;
            j->worst_rate = r->rate;
            j->worst_truth = truth;
        }
        double off = fabs(r->rate / nominal - 1);
        if (off > j->worst_nominal) j->worst_nominal = off;
    }
}

static void print_judged(const char *what, const judged_t *j)
{
    print_message("  %-11s %3d judged (%d not: the driver was late), worst %+.1f%% of the truth "
                  "(%.2f MB/s for %.2f MB/s at %.3f s), worst %.1f%% off the nominal rate; %d of "
                  "the wrong sign, %d outside\n",
                  what, j->checked, j->unsteady, j->worst * 100, j->worst_rate / 1e6,
                  j->worst_truth / 1e6, j->worst_at, j->worst_nominal * 100, j->wrong_sign,
                  j->outside);
}

/* Runs the driver under an engine with `interval_ms` (0: no timer) and checkpoints every
 * 64 KiB, recording m.rate at every evaluation; judges the records. */
static void measure_rate(unsigned interval_ms, double phase, int phases, double settle,
                         judged_t *ticks, judged_t *checkpoints)
{
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.interval_ms = interval_ms};
    mmt_policy_t *p = new_engine(&o, log);
    mmt_mem_set_checkpoint(64 * 1024);
    assert_int_equal(mmt_policy_action(p, "record", record_rate, NULL), 0);
    load_text(p, "record.lua", recording_policy);
    atomic_store(&nrecords, 0);
    driver_t *d = driver_start(phase, phases);
    pthread_join(d->thread, NULL);
    mmt_policy_free(p);
    mmt_mem_set_checkpoint(0);
    double window = interval_ms ? interval_ms / 1000.0 : 1.0;
    judge(d, window, settle, ticks, checkpoints);
    if (log_level_count(log, MMT_LOG_ERROR)) log_dump(log);
    assert_int_equal(log_level_count(log, MMT_LOG_ERROR), 0);
    assert_true(atomic_load(&nrecords) < MAX_RECORDS);
    free(d);
    free_log(log);
}

/* measure_rate, asserting that no judged evaluation was wrong; run again (3 runs at most)
 * while it judged fewer than `min_ticks` ticks or `min_checkpoints` checkpoints: a machine
 * busy enough to keep the driver waiting leaves fewer windows steady enough to judge. */
static void check_rate(unsigned interval_ms, double phase, int phases, double settle,
                       int min_ticks, int min_checkpoints)
{
    for (int run = 1;; run++) {
        judged_t ticks, checkpoints;
        measure_rate(interval_ms, phase, phases, settle, &ticks, &checkpoints);
        if (interval_ms) print_judged("ticks", &ticks);
        else assert_int_equal(ticks.checked + ticks.unsteady, 0); /* checkpoints only */
        print_judged("checkpoints", &checkpoints);
        assert_int_equal(ticks.wrong_sign, 0);
        assert_int_equal(checkpoints.wrong_sign, 0);
        assert_int_equal(ticks.outside, 0);
        assert_int_equal(checkpoints.outside, 0);
        if (ticks.checked >= min_ticks && checkpoints.checked >= min_checkpoints) return;
        if (run == 3)
            fail_msg("in 3 runs the driver was never on time long enough to judge %d ticks and "
                     "%d checkpoints", min_ticks, min_checkpoints);
        print_message("  too few to judge: again\n");
    }
}

static void test_rate_is_zero_until_the_engine_has_half_a_window_of_history(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log); /* no timer: a 1 s window, explicit checkpoints */
    assert_int_equal(mmt_policy_action(p, "record", record_rate, NULL), 0);
    assert_int_equal(mmt_policy_action(p, "stamp", record_stamp, NULL), 0);
    load_text(p, "record.lua", stamped_policy);
    atomic_store(&nrecords, 0);
    uint64_t before = meminfo_now().in_use;
    mmt_mem_checkpoint(); /* the engine's first evaluation, its first sample */
    void *block = mmt_malloc(1 << 20);
    uint64_t after = meminfo_now().in_use;
    sleep_ms(200);
    mmt_mem_checkpoint(); /* 0.2 s of history: under half the window */
    sleep_ms(400);
    mmt_mem_checkpoint(); /* 0.6 s: over it */
    mmt_free(block);
    mmt_policy_free(p);
    free_log(log);
    assert_int_equal(atomic_load(&nrecords), 3);
    double span1 = records[1].stamp - records[0].stamp, span2 = records[2].stamp - records[0].stamp;
    assert_true(records[0].stamp > 0 && span1 > 0 && span2 > span1);
    double truth = ((double)after - (double)before) / span2;
    print_message("  rate %.0f at the start, %.0f after %.3f s, %.0f after %.3f s (truth %.0f)\n",
                  records[0].rate, records[1].rate, span1, records[2].rate, span2, truth);
    assert_true(records[0].rate == 0);
    if (span1 < 0.49) assert_true(records[1].rate == 0);
    if (span2 > 0.51) assert_true(fabs(records[2].rate / truth - 1) < 0.02);
}

static void test_rate_is_right_at_every_tick_and_checkpoint_with_a_50ms_timer(void **state)
{
    (void)state;
    if (under_valgrind()) skip();
    /* 5 phases of 0.6 s, each judged from 1.5 windows in (a window and a late tick): about
     * 52 ticks and 420 checkpoints when the driver keeps its time. */
    check_rate(50, 0.6, 5, 0.075, 20, 150);
}

static void test_rate_is_right_at_every_tick_and_checkpoint_with_a_100ms_timer(void **state)
{
    (void)state;
    if (under_valgrind()) skip();
    /* About 22 ticks and 350 checkpoints. */
    check_rate(100, 0.6, 5, 0.15, 10, 120);
}

static void test_rate_without_a_timer_follows_a_change_of_direction_within_a_window(void **state)
{
    (void)state;
    if (under_valgrind()) skip();
    /* Up, down, up, 1.5 s each; the window is a second, so from 1.1 s into a phase the
     * rate must be the phase's: about 190 checkpoints. */
    check_rate(0, 1.5, 3, 1.1, 0, 60);
}

/* ---- mmt.every at its own period ---------------------------------------------------------- */

enum { MAX_RUNS = 4096 };

/* When each task run and rule evaluation happened, filled by the host action `run`
 * (argument 1: a task, 2: a rule). */
static double run_times[MAX_RUNS];
static int run_kinds[MAX_RUNS];
static _Atomic int nruns;

static int64_t record_run(int64_t kind, void *ud)
{
    (void)ud;
    int i = atomic_fetch_add(&nruns, 1);
    if (i < MAX_RUNS) {
        run_times[i] = now_seconds();
        run_kinds[i] = (int)kind;
    }
    return 0;
}

static int64_t sleep_for(int64_t ms, void *ud)
{
    (void)ud;
    sleep_ms((unsigned)ms);
    return 0;
}

/* The policies below call run(0) just before they declare their task: that is when the
 * task's clock starts, and it is due every period after. */
#define DECLARED "mmt.call('run', 0)\n"

/* Runs `text` under an engine with options `o` for `seconds`; returns when the task was
 * declared. */
static double run_policy(const mmt_policy_options_t *o, const char *text, double seconds)
{
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(o, log);
    assert_int_equal(mmt_policy_action(p, "run", record_run, NULL), 0);
    assert_int_equal(mmt_policy_action(p, "sleep", sleep_for, NULL), 0);
    atomic_store(&nruns, 0);
    load_text(p, "every.lua", text);
    sleep_ms((unsigned)(seconds * 1000));
    mmt_policy_free(p);
    if (log_level_count(log, MMT_LOG_ERROR)) log_dump(log);
    assert_int_equal(log_level_count(log, MMT_LOG_ERROR), 0);
    free_log(log);
    assert_true(atomic_load(&nruns) > 0 && run_kinds[0] == 0);
    return run_times[0];
}

/* How many runs of `kind` began after `from` and by `to` (monotonic seconds). */
static int runs_between(int kind, double from, double to)
{
    int n = 0, total = atomic_load(&nruns);
    for (int i = 0; i < total && i < MAX_RUNS; i++)
        if (run_kinds[i] == kind && run_times[i] > from && run_times[i] <= to) n++;
    return n;
}

static void test_rate_every_shorter_than_the_interval_runs_at_its_own_period(void **state)
{
    (void)state;
    if (under_valgrind()) skip();
    mmt_policy_options_t o = {.interval_ms = 100};
    double t0 = run_policy(&o,
                           "local mmt = require 'mmt'\n" DECLARED
                           "mmt.every(0.05, function() mmt.call('run', 1) end)\n"
                           "mmt.rule { name = 'count', when = function() mmt.call('run', 2)\n"
                           "  return false end, fire = function() end }\n",
                           3.2);
    /* Due at t0 + 0.05 k: 60 in 3 s, each counted if it is less than 25 ms late. */
    int tasks = runs_between(1, t0, t0 + 3.025);
    /* Rules keep the timer's interval: they are not evaluated when only a task is due. */
    int rules = runs_between(2, t0, t0 + 3.025);
    print_message("  every(0.05) with a 100 ms timer: %d runs in 3 s (60 due); the rule was "
                  "evaluated %d times (30 ticks)\n", tasks, rules);
    assert_true(tasks >= 58 && tasks <= 60);
    assert_true(rules >= 27 && rules <= 31);
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void test_rate_every_keeps_its_period_without_drift(void **state)
{
    (void)state;
    if (under_valgrind()) skip();
    mmt_policy_options_t o = {.interval_ms = 100};
    double t0 = run_policy(&o,
                           "local mmt = require 'mmt'\n" DECLARED
                           "mmt.every(0.25, function() mmt.call('run', 1) end)\n",
                           3.2);
    /* Run k is due at t0 + 0.25 k: how late each was. Late by its own wake-up only, not
     * by the slips of the runs before it added up, nor by waiting for a tick (every other
     * due time falls between two of the timer's). */
    double late[16];
    int n = 0;
    for (int i = 0; i < atomic_load(&nruns) && i < MAX_RUNS && n < 16; i++)
        if (run_kinds[i] == 1 && run_times[i] <= t0 + 3.125) {
            double due = t0 + 0.25 * round((run_times[i] - t0) / 0.25);
            late[n++] = run_times[i] - due;
        }
    qsort(late, (size_t)n, sizeof late[0], by_value);
    double median = n ? late[n / 2] : 0, most = n ? late[n - 1] : 0, least = n ? late[0] : 0;
    print_message("  every(0.25): %d runs in 3 s (12 due); late by %.1f ms at the median, "
                  "%.1f ms at most\n", n, median * 1e3, most * 1e3);
    assert_true(n >= 11 && n <= 12);
    assert_true(least > -0.005);
    assert_true(median < 0.01);
    assert_true(most < 0.1);
}

static void test_rate_a_slow_task_skips_the_periods_it_missed(void **state)
{
    (void)state;
    if (under_valgrind()) skip();
    mmt_policy_options_t o = {.interval_ms = 100, .budget_ms = 1000, .evaluation_ms = 2000};
    /* Its first 5 runs take 0.25 s, 2.5 periods each; then it is quick. Skipping what it
     * missed, it runs at 0.1, 0.4, 0.7, 1.0, 1.3 s, then every 0.1 s from 1.6 s: 14 runs
     * by 2.45 s. Catching up would make 24, in bursts. */
    double t0 = run_policy(&o,
                           "local mmt = require 'mmt'\n"
                           "local n = 0\n" DECLARED
                           "mmt.every(0.1, function() mmt.call('run', 1) n = n + 1\n"
                           "  if n <= 5 then mmt.call('sleep', 250) end end)\n",
                           2.55);
    int n = runs_between(1, t0, t0 + 2.45);
    print_message("  a 0.1 s task whose first 5 runs take 0.25 s: %d runs in 2.45 s (14 due)\n",
                  n);
    assert_true(n >= 12 && n <= 15);
}

static void test_rate_every_under_a_millisecond_is_said_and_runs_once_a_millisecond(void **state)
{
    (void)state;
    if (under_valgrind()) skip();
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.interval_ms = 100};
    mmt_policy_t *p = new_engine(&o, log);
    assert_int_equal(mmt_policy_action(p, "run", record_run, NULL), 0);
    atomic_store(&nruns, 0);
    load_text(p, "fast.lua", "local mmt = require 'mmt'\n" DECLARED
                             "mmt.every(1e-6, function() mmt.call('run', 1) end)\n");
    sleep_ms(500);
    mmt_policy_free(p);
    assert_logged(log, "fast.lua:3: mmt.every: a period of 1e-06 s runs every 0.001 s");
    free_log(log);
    double t0 = run_times[0];
    int n = runs_between(1, t0, t0 + 0.4);
    print_message("  every(1e-6): %d runs in 0.4 s (400 at most)\n", n);
    /* Not back to back (hundreds of thousands); a wake-up a little late skips a period. */
    assert_true(n >= 100 && n <= 401);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rate_is_zero_until_the_engine_has_half_a_window_of_history),
        cmocka_unit_test(test_rate_is_right_at_every_tick_and_checkpoint_with_a_50ms_timer),
        cmocka_unit_test(test_rate_is_right_at_every_tick_and_checkpoint_with_a_100ms_timer),
        cmocka_unit_test(test_rate_without_a_timer_follows_a_change_of_direction_within_a_window),
        cmocka_unit_test(test_rate_every_shorter_than_the_interval_runs_at_its_own_period),
        cmocka_unit_test(test_rate_every_keeps_its_period_without_drift),
        cmocka_unit_test(test_rate_a_slow_task_skips_the_periods_it_missed),
        cmocka_unit_test(test_rate_every_under_a_millisecond_is_said_and_runs_once_a_millisecond),
    };
    return cmocka_run_group_tests_name("rate", tests, make_test_dir, remove_test_dir);
}
