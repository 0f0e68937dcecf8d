/*
 * Evaluating a policy against a snapshot. Declarative rules (metric/above/below) are
 * checked in C, and Lua runs only when one fires or resolves; `when` rules call into Lua
 * at every evaluation. Errors are isolated per rule: logged with the rule's name, and a
 * rule (or task) that fails MMT__MAX_ERRORS times in a row is disabled until the next
 * load. Caller holds the engine lock.
 */
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "engine.h"

static double metric_value(snapshot_t *snap, metric_t m)
{
    const mmt_meminfo_t *i = &snap->info;
    switch (m) {
    case METRIC_IN_USE: return (double)i->in_use;
    case METRIC_ALLOCATED: return (double)i->allocated;
    case METRIC_FREED: return (double)i->freed;
    case METRIC_PEAK: return (double)i->peak;
    case METRIC_ALLOCATIONS: return (double)i->allocations;
    case METRIC_FREES: return (double)i->frees;
    case METRIC_REALLOCS: return (double)i->reallocs;
    case METRIC_RATE: return snap->rate;
    case METRIC_RSS:
        if (snap->rss < 0) snap->rss = mmt__read_rss();
        return snap->rss;
    case METRIC_LUA: return snap->lua;
    default: return 0;
    }
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
    const char *msg = mmt__error_text(s->L);
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

/* Calls the function `ref` with the snapshot; returns true on success, with its one
 * result left on the stack if want_result. */
static bool call_with_snapshot(pstate_t *s, snapshot_t *snap, int *slot, int ref,
                               bool want_result, rule_t *r)
{
    push_call(s, snap, slot, ref);
    int rc = mmt__pstate_call(s, 1, want_result ? 1 : 0);
    if (rc != 0) {
        char what[300];
        snprintf(what, sizeof what, "\"%s\"", r->name);
        failed(s, rc, "rule", what, &r->errors, &r->disabled);
        return false;
    }
    return true;
}

static void evaluate_rule(pstate_t *s, rule_t *r, snapshot_t *snap, int *slot)
{
    bool holds;
    if (r->when_ref != LUA_NOREF) {
        if (!call_with_snapshot(s, snap, slot, r->when_ref, true, r)) return;
        holds = lua_toboolean(s->L, -1);
        lua_pop(s->L, 1);
    } else {
        double v = metric_value(snap, r->metric);
        /* Hysteresis: fire above `above`, resolve only under `below`. */
        holds = r->firing ? !(v < r->below) : v > r->above;
    }

    if (!r->firing) {
        if (!holds) {
            r->since = -1;
            r->errors = 0;
            return;
        }
        if (r->since < 0) r->since = snap->time;
        if (snap->time - r->since < r->hold) return;
        r->firing = true; /* even if `fire` fails: it must not fire at every evaluation */
        r->since = -1;
        if (call_with_snapshot(s, snap, slot, r->fire_ref, false, r)) r->errors = 0;
        mmt__policy_event(s->engine, r->name, true, snap);
    } else if (!holds) {
        r->firing = false;
        if (r->resolve_ref == LUA_NOREF) {
            r->errors = 0;
        } else if (call_with_snapshot(s, snap, slot, r->resolve_ref, false, r)) {
            r->errors = 0;
        }
        mmt__policy_event(s->engine, r->name, false, snap);
    } else if (r->when_ref != LUA_NOREF) {
        r->errors = 0; /* `when` ran cleanly */
    }
}

static void run_task(pstate_t *s, task_t *t, snapshot_t *snap, int *slot)
{
    push_call(s, snap, slot, t->fn_ref);
    int rc = mmt__pstate_call(s, 1, 0);
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
    bool run_tasks;
} evaluation_t;

/* Runs under lua_cpcall: the glue between rules (making the snapshot table) allocates,
 * and an allocation failure outside a protected call would be a LuaJIT panic. Each rule
 * and task still runs in a protected call of its own. */
static int evaluate_protected(lua_State *L)
{
    evaluation_t *e = lua_touserdata(L, 1);
    pstate_t *s = e->s;
    int slot = 0;
    for (size_t i = 0; i < s->nrules; i++)
        if (!s->rules[i].disabled) evaluate_rule(s, &s->rules[i], e->snap, &slot);
    if (e->run_tasks) {
        for (size_t i = 0; i < s->ntasks; i++) {
            task_t *t = &s->tasks[i];
            if (t->disabled || e->snap->time < t->next_due) continue;
            t->next_due += t->period;
            if (t->next_due <= e->snap->time) t->next_due = e->snap->time + t->period;
            run_task(s, t, e->snap, &slot);
        }
    }
    return 0;
}

void mmt__evaluate(pstate_t *s, snapshot_t *snap, bool run_tasks)
{
    lua_State *L = s->L;
    int top = lua_gettop(L);
    evaluation_t e = {s, snap, run_tasks};
    int rc = lua_cpcall(L, evaluate_protected, &e);
    if (rc != 0) {
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
    lua_settop(L, top);
}

void mmt__carry_state(pstate_t *to, const pstate_t *from)
{
    if (!from) return;
    for (size_t i = 0; i < to->nrules; i++) {
        for (size_t j = 0; j < from->nrules; j++) {
            if (strcmp(to->rules[i].name, from->rules[j].name) == 0) {
                to->rules[i].firing = from->rules[j].firing;
                to->rules[i].since = from->rules[j].since;
                break;
            }
        }
    }
}
