/*
 * Evaluating a policy against a snapshot. Declarative rules (metric/above/below, on the
 * process or on a tag's subtree) are checked in C, and Lua runs only when one fires or
 * resolves; `when` rules call into Lua at every evaluation. Errors are isolated per rule:
 * logged with the rule's name, and a rule (or task) that fails MMT__MAX_ERRORS times in a
 * row is disabled until the next load. Caller holds the engine lock.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "engine.h"
#include "lj.h"

/* The figure a declarative rule compares, into *v: returns 1; or 0 when the rule cannot
 * hold (its optional tag does not exist yet, or the machine has no such figure), or -1 when it cannot be judged now (no
 * memory was left to read the tags: the rule keeps its state until it can). */
static int metric_value(pstate_t *s, snapshot_t *snap, rule_t *r, double *v)
{
    metric_t m = r->metric;
    if (r->tag_path) {
        if (r->tag < 0) {
            /* Looked up again only once tags were made since: a lookup takes their lock. */
            unsigned count = mmt__tag_count();
            if (count == r->tag_checked) return 0;
            r->tag_checked = count;
            int tag = mmt_tag_lookup(r->tag_path);
            if (tag <= 0) return 0;
            r->tag = tag;
        }
        if (!mmt__snapshot_tags(s->engine, snap)) return -1;
        if ((unsigned)r->tag >= snap->ntags) return 0; /* made after the reading: nothing in it */
        const mmt_meminfo_t *info = &snap->tags[r->tag].sub;
        if ((int)m < MMT__NFIELDS) *v = (double)mmt__field_value(info, (int)m);
        else *v = mmt__tag_rate(s->engine, (unsigned)r->tag, snap->tags_time, (double)info->in_use);
        return 1;
    }
    if ((int)m < MMT__NFIELDS) {
        *v = (double)mmt__field_value(&snap->info, (int)m);
        return 1;
    }
    switch (m) {
    case METRIC_RATE: *v = snap->rate; break;
    case METRIC_RSS:
        if (snap->rss < 0) snap->rss = mmt__read_rss();
        *v = snap->rss;
        break;
    case METRIC_LUA: *v = snap->lua; break;
    case METRIC_CGROUP_CURRENT:
    case METRIC_CGROUP_RATIO: {
        if (!mmt__snapshot_machine(snap, MMT_MACHINE_CGROUP)) return 0;
        const struct mmt_cgroup *cg = &snap->machine.cgroup;
        if (m == METRIC_CGROUP_RATIO && (cg->limit == MMT_UNLIMITED || cg->limit == 0)) return 0;
        *v = m == METRIC_CGROUP_CURRENT ? (double)cg->current
                                        : (double)cg->current / (double)cg->limit;
        break;
    }
    case METRIC_PSI_SOME10:
    case METRIC_PSI_FULL10:
        if (!mmt__snapshot_machine(snap, MMT_MACHINE_PSI)) return 0;
        *v = m == METRIC_PSI_SOME10 ? snap->machine.psi.some10 : snap->machine.psi.full10;
        break;
    case METRIC_AVAILABLE:
        if (!mmt__snapshot_machine(snap, MMT_MACHINE_SYSTEM) || !snap->machine.system.available)
            return 0;
        *v = (double)snap->machine.system.available;
        break;
    default: *v = 0; break;
    }
    return 1;
}

/* Pushes the function `ref` and the snapshot as its argument. The snapshot table is made
 * on first need and kept at stack index *slot for the rest of the evaluation. */
static void push_call(pstate_t *s, snapshot_t *snap, int *slot, int ref)
{
    if (*slot == 0) {
        mmt__push_snapshot(s, snap);
        *slot = lua_gettop(s->L);
    }
    lua_rawgeti(s->L, LUA_REGISTRYINDEX, ref);
    lua_pushvalue(s->L, *slot);
}

/* Reports a failed call of `what` (a rule or task), counts it, and disables after too
 * many in a row. Pops the error message. */
static void failed(pstate_t *s, int rc, const char *kind, const char *what, int *errors,
                   bool *disabled)
{
    char msg[1024];
    mmt__pstate_expand(s, mmt__error_text(s->L), msg, sizeof msg);
    if (rc == LUA_ERRMEM)
        mmt__policy_log(s->engine, MMT_LOG_ERROR,
                        "%s %s: out of memory (the policy VM may hold %zu bytes)", kind, what,
                        s->lua_limit);
    else
        mmt__policy_log(s->engine, MMT_LOG_ERROR, "%s %s: %s", kind, what,
                        msg);
    lua_pop(s->L, 1);
    if (++*errors >= MMT__MAX_ERRORS) {
        *disabled = true;
        mmt__policy_log(s->engine, MMT_LOG_ERROR,
                        "%s %s: disabled after %d errors in a row; it runs again after a reload",
                        kind, what, *errors);
    }
}

/* True if the call that just returned rc was stopped because the whole evaluation ran
 * out of time: that is not the rule's error (evaluate_protected reports it). Pops the
 * message. */
static bool cut_by_evaluation(pstate_t *s, int rc)
{
    if (rc == 0 || s->stop != MMT__STOP_EVALUATION) return false;
    lua_pop(s->L, 1);
    return true;
}

/* Calls the function `ref` with the snapshot; returns true on success, with its one
 * result left on the stack if want_result. */
static bool call_with_snapshot(pstate_t *s, snapshot_t *snap, int *slot, int ref,
                               bool want_result, rule_t *r)
{
    push_call(s, snap, slot, ref);
    int rc = mmt__pstate_call(s, 1, want_result ? 1 : 0);
    r->spent += s->call_seconds;
    if (cut_by_evaluation(s, rc)) return false;
    if (rc != 0) {
        char what[300];
        snprintf(what, sizeof what, "\"%s\"", r->name);
        failed(s, rc, "rule", what, &r->errors, &r->disabled);
        return false;
    }
    return true;
}

void mmt__rule_turn(pstate_t *s, rule_t *r, snapshot_t *snap, bool fired)
{
    int top = lua_gettop(s->L), slot = 0;
    r->firing = fired;
    r->since = -1;
    int ref = fired ? r->fire_ref : r->resolve_ref;
    if (ref == LUA_NOREF || call_with_snapshot(s, snap, &slot, ref, false, r)) r->errors = 0;
    lua_settop(s->L, top);
    if (fired) r->fired++;
    mmt__policy_event(s->engine, r->name, fired, snap);
}

static void evaluate_rule(pstate_t *s, rule_t *r, snapshot_t *snap, int *slot)
{
    /* A pressure rule is its trigger's to fire; judged here on its metric only where none
     * could be armed, and then at ticks only, as that is what the log said. */
    if (r->pressure && (r->pressure_mode != MMT__PSI_POLLING || mmt__inside_checkpoint())) return;
    bool holds;
    if (r->when_ref != LUA_NOREF) {
        if (!call_with_snapshot(s, snap, slot, r->when_ref, true, r)) return;
        holds = lua_toboolean(s->L, -1);
        lua_pop(s->L, 1);
    } else {
        double v = 0;
        int got = metric_value(s, snap, r, &v);
        if (got < 0) return;
        /* Hysteresis: fire above `above`, resolve only under `below`. */
        holds = got && (r->firing ? !(v < r->below) : v > r->above);
    }

    if (!r->firing) {
        if (!holds) {
            r->since = -1;
            r->errors = 0;
            return;
        }
        if (r->since < 0) r->since = snap->time;
        if (snap->time - r->since < r->hold - mmt__slack(r->hold, snap->time)) return;
        double since = r->since;
        r->firing = true; /* even if `fire` fails: it must not fire at every evaluation */
        r->since = -1;
        if (call_with_snapshot(s, snap, slot, r->fire_ref, false, r)) {
            r->errors = 0;
        } else if (s->stop == MMT__STOP_EVALUATION) {
            /* Cut by the evaluation's deadline, not failed: it fires again, first thing
             * at the next evaluation. */
            r->firing = false;
            r->since = since;
            return;
        }
        r->fired++;
        mmt__policy_event(s->engine, r->name, true, snap);
    } else if (!holds) {
        r->firing = false;
        if (r->resolve_ref == LUA_NOREF) {
            r->errors = 0;
        } else if (call_with_snapshot(s, snap, slot, r->resolve_ref, false, r)) {
            r->errors = 0;
        } else if (s->stop == MMT__STOP_EVALUATION) {
            r->firing = true; /* as for fire */
            return;
        }
        mmt__policy_event(s->engine, r->name, false, snap);
    } else if (r->when_ref != LUA_NOREF) {
        r->errors = 0; /* `when` ran cleanly */
    }
}

static void run_task(pstate_t *s, task_t *t, snapshot_t *snap, int *slot)
{
    push_call(s, snap, slot, t->fn_ref);
    t->runs++;
    int rc = mmt__pstate_call(s, 1, 0);
    t->spent += s->call_seconds;
    if (cut_by_evaluation(s, rc)) return;
    if (rc != 0) {
        char what[300];
        snprintf(what, sizeof what, "every %gs (%s)", t->period, t->where);
        failed(s, rc, "task", what, &t->errors, &t->disabled);
    } else {
        t->errors = 0;
    }
}

typedef struct evaluation {
    pstate_t *s;
    snapshot_t *snap;
    bool run_rules, run_tasks;
} evaluation_t;

/* What took the time of an evaluation that ran past its budget: a rule or a task. */
typedef struct eater {
    double spent;
    rule_t *rule;
    task_t *task;
} eater_t;

static void describe(const eater_t *e, char *buf, size_t len)
{
    if (e->rule) snprintf(buf, len, "rule \"%s\"", e->rule->name);
    else snprintf(buf, len, "task every %gs (%s)", e->task->period, e->task->where);
}

static void keep_top(eater_t top[3], eater_t e)
{
    for (int i = 0; i < 3; i++) {
        if (e.spent > top[i].spent) {
            eater_t t = top[i];
            top[i] = e;
            e = t;
        }
    }
}

/* The evaluation ran past its budget: say what ate it, and charge the worst offender,
 * which is disabled once it has been the worst MMT__MAX_ERRORS evaluations in a row. */
static void report_overrun(pstate_t *s, size_t skipped)
{
    eater_t top[3] = {{0}};
    for (size_t i = 0; i < s->nrules; i++)
        keep_top(top, (eater_t){s->rules[i].spent, &s->rules[i], NULL});
    for (size_t i = 0; i < s->ntasks; i++)
        keep_top(top, (eater_t){s->tasks[i].spent, NULL, &s->tasks[i]});
    char list[1024] = "", what[300];
    size_t used = 0;
    for (int i = 0; i < 3 && top[i].spent > 0 && used < sizeof list; i++) {
        describe(&top[i], what, sizeof what);
        int n = snprintf(list + used, sizeof list - used, "%s%s %.1f ms", i ? ", " : "", what,
                         top[i].spent * 1e3);
        used += n > 0 ? (size_t)n : 0;
    }
    mmt__policy_log(s->engine, MMT_LOG_ERROR,
                    "evaluation stopped: it ran past its time budget of %u ms (%s); %zu rule%s "
                    "not evaluated this time",
                    s->engine->opts.evaluation_ms, used ? list : "no policy code ran", skipped,
                    skipped == 1 ? "" : "s");
    if (top[0].spent <= 0) return;
    /* "In a row": an evaluation past its budget where another was the worst breaks it. */
    for (size_t i = 0; i < s->nrules; i++)
        if (&s->rules[i] != top[0].rule) s->rules[i].overruns = 0;
    for (size_t i = 0; i < s->ntasks; i++)
        if (&s->tasks[i] != top[0].task) s->tasks[i].overruns = 0;
    int *overruns = top[0].rule ? &top[0].rule->overruns : &top[0].task->overruns;
    bool *disabled = top[0].rule ? &top[0].rule->disabled : &top[0].task->disabled;
    if (++*overruns >= MMT__MAX_ERRORS) {
        *disabled = true;
        describe(&top[0], what, sizeof what);
        mmt__policy_log(s->engine, MMT_LOG_ERROR,
                        "%s: disabled: it took the most time in %d evaluations in a row that "
                        "ran past their budget; it runs again after a reload",
                        what, *overruns);
    }
}

/*
 * Runs under a protected call (made once per state, see mmt__rules_open): the glue between
 * rules (making the snapshot table) allocates, and an allocation failure outside a
 * protected call would be a LuaJIT panic. Each rule and task still runs in a protected
 * call of its own. The whole evaluation has a deadline: past it, the rules not reached
 * wait for the next evaluation, which starts with them.
 */
static int evaluate_protected(lua_State *L)
{
    evaluation_t *e = lua_touserdata(L, 1);
    pstate_t *s = e->s;
    int slot = 0;
    for (size_t i = 0; i < s->nrules; i++) s->rules[i].spent = 0;
    for (size_t i = 0; i < s->ntasks; i++) s->tasks[i].spent = 0;
    /* On the monotonic clock, as every budget is: a virtual engine's snapshot has a time
     * of its own (lua/virtual.h). */
    s->eval_deadline = mmt__now() + s->engine->opts.evaluation_ms / 1000.0;
    size_t n = s->nrules, start = s->resume_at < n ? s->resume_at : 0;
    size_t cut_at = n; /* the rule (counted from start) the deadline stopped, n if none */
    bool cut = false;
    for (size_t i = 0; e->run_rules && i < n && !cut; i++) {
        rule_t *r = &s->rules[(start + i) % n];
        if (r->disabled) continue;
        evaluate_rule(s, r, e->snap, &slot);
        cut = s->stop == MMT__STOP_EVALUATION;
        if (cut) cut_at = i;
    }
    for (size_t i = 0; e->run_tasks && !cut && i < s->ntasks; i++) {
        task_t *t = &s->tasks[i];
        if (t->disabled || e->snap->time < t->next_due - mmt__slack(t->period, t->next_due))
            continue;
        run_task(s, t, e->snap, &slot);
        cut = s->stop == MMT__STOP_EVALUATION;
        if (cut) break; /* not done: due again at the next tick */
        /* Due on its own grid, whole periods after its declaration, so that late runs do
         * not drift it. A run that ended past its next due time (a slow task, a late
         * wake-up) skips the periods it missed: one run, never a burst to catch up. */
        double now = mmt__engine_now(s->engine);
        double ran = round((t->next_due - t->origin) / t->period); /* the point it ran for */
        double k = floor((now - t->origin) / t->period) + 1;       /* the first after now */
        if (k < ran + 1) k = ran + 1; /* it may run a hair early (mmt__slack): not again */
        t->next_due = t->origin + k * t->period;
    }
    s->eval_deadline = INFINITY;
    if (cut) {
        /* The rule that was stopped had not finished: the next evaluation starts with it.
         * (A cut among the tasks leaves resume_at where it was: cut_at is n.) */
        s->resume_at = n ? (start + cut_at) % n : 0;
        report_overrun(s, n - cut_at);
    } else {
        /* Only what ran had a clean evaluation: rules are not evaluated when only tasks
         * are due, and their resume point and overrun counts wait for their next one. */
        if (e->run_rules) {
            s->resume_at = 0;
            for (size_t i = 0; i < s->nrules; i++) s->rules[i].overruns = 0;
        }
        if (e->run_tasks)
            for (size_t i = 0; i < s->ntasks; i++) s->tasks[i].overruns = 0;
    }
    s->stop = MMT__STOP_NONE;
    return 0;
}

int mmt__rules_open(lua_State *L)
{
    pstate_t *s = mmt__pstate_of(L);
    lua_pushcfunction(L, evaluate_protected);
    s->glue_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

double mmt__tasks_due(const pstate_t *s, double after)
{
    double due = INFINITY;
    for (size_t i = 0; i < s->ntasks; i++) {
        const task_t *t = &s->tasks[i];
        if (!t->disabled && t->next_due > after && t->next_due < due) due = t->next_due;
    }
    return due;
}

void mmt__evaluate(pstate_t *s, snapshot_t *snap, bool run_rules, bool run_tasks)
{
    lua_State *L = s->L;
    int top = lua_gettop(L);
    evaluation_t e = {s, snap, run_rules, run_tasks};
    s->evaluating = snap; /* m.tags of its table shares snap's reading (module.c) */
    /* Neither pushing the function (a reference) nor the pointer allocates: a policy of
     * declarative rules evaluates without making Lua garbage. */
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->glue_ref);
    lua_pushlightuserdata(L, &e);
    int rc = lua_pcall(L, 1, 0, 0);
    if (rc != 0) {
        s->eval_deadline = INFINITY;
        /* Rules that had run keep their new state; the rest run at the next evaluation. */
        if (rc == LUA_ERRMEM) {
            lua_gc(L, LUA_GCCOLLECT, 0);
            mmt__policy_log(s->engine, MMT_LOG_ERROR, "evaluation cut short: out of memory "
                            "(the policy VM may hold %zu bytes)", s->lua_limit);
        } else {
            mmt__policy_log(s->engine, MMT_LOG_ERROR, "evaluation cut short: %s",
                            mmt__error_text(L));
        }
    }
    s->evaluating = NULL;
    lua_settop(L, top);
}

/* ---- Rules by name ---------------------------------------------------------------------- */

/* FNV-1a from a basis of the state's own (names_seed), so that a policy cannot choose
 * names that all land in one chain. */
static uint32_t hash_name(const pstate_t *s, const char *name)
{
    uint32_t h = 2166136261u ^ s->names_seed;
    for (const unsigned char *c = (const unsigned char *)name; *c; c++) h = (h ^ *c) * 16777619u;
    return h;
}

long mmt__rule_find(const pstate_t *s, const char *name)
{
    if (!s->names_cap) return -1;
    size_t mask = s->names_cap - 1;
    for (size_t at = hash_name(s, name) & mask;; at = (at + 1) & mask) {
        uint32_t v = s->names[at];
        if (v == 0) return -1;
        if (strcmp(s->rules[v - 1].name, name) == 0) return (long)v - 1;
    }
}

static void index_put(const pstate_t *s, uint32_t *names, size_t cap, const char *name,
                      uint32_t value)
{
    size_t at = hash_name(s, name) & (cap - 1);
    while (names[at]) at = (at + 1) & (cap - 1);
    names[at] = value;
}

bool mmt__rule_index(pstate_t *s)
{
    size_t n = s->nrules + 1; /* with the one being added, s->rules[s->nrules] */
    if (n * 2 > s->names_cap) {
        size_t cap = s->names_cap ? s->names_cap * 2 : 64;
        uint32_t *names = mmt__backend.calloc(cap, sizeof *names);
        if (!names) return false;
        for (size_t i = 0; i < s->nrules; i++)
            index_put(s, names, cap, s->rules[i].name, (uint32_t)i + 1);
        mmt__backend.free(s->names);
        s->names = names;
        s->names_cap = cap;
    }
    index_put(s, s->names, s->names_cap, s->rules[s->nrules].name, (uint32_t)n);
    return true;
}

void mmt__carry_state(pstate_t *to, const pstate_t *from)
{
    if (!from) return;
    for (size_t i = 0; i < to->nrules; i++) {
        long j = mmt__rule_find(from, to->rules[i].name);
        if (j >= 0) {
            to->rules[i].firing = from->rules[j].firing;
            to->rules[i].since = from->rules[j].since;
            to->rules[i].fired = from->rules[j].fired;
        }
    }
}
