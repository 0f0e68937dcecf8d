/*
 * A program with a Lua of its own, as Redis, HAProxy or a game engine has: it links
 * Debian's Lua 5.1 (which exports lua_*) and libmmtmem.so, whose policy engine runs
 * LuaJIT. Round after round it runs Lua code in its own state (tables, string.gsub with a
 * function, errors raised from C and from Lua, caught with pcall) and, in between, makes
 * the policy given as argv[1] fire and resolve a rule whose code calls host actions; it
 * checks every result of both. test_embed runs it plainly and under mmt-run.
 *
 * The policy's rule must fire above 16 MiB in use and resolve under 8 MiB, calling
 * mmt.call("fired", 21) and mmt.call("resolved", 7) with numbers it computes.
 *
 * Prints one line per round and "done"; exits 0 only if every result was right, 1 with a
 * line on stderr naming the first wrong one.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "mmt/memory.h"
#include "mmt/policy.h"

enum { ROUNDS = 5 };

/* The host's own Lua code: results that depend on n, from each part of the library. */
static const char host_chunk[] =
    "local n = ...\n"
    "local t = {}\n"
    "for i = 1, 1000 do t[i] = i * n end\n"
    "local s = table.concat(t, ',', 1, 5)\n"
    "local g, count = string.gsub(s, '%d+', function(x) return '<' .. x .. '>' end)\n"
    "local ok, err = pcall(host_fail, n)\n"
    "local ok2, e2 = pcall(error, { code = n * 2 })\n"
    "return g, count, ok, err, ok2 and -1 or e2.code, jit == nil and _VERSION or 'not PUC Lua'\n";

/* Called from the host's Lua: raises an error from C. */
static int host_fail(lua_State *L)
{
    return luaL_error(L, "host_fail %d", (int)luaL_checkinteger(L, 1));
}

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "lua_host: " __VA_ARGS__);                                     \
            fputc('\n', stderr);                                                           \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

/* Runs host_chunk with n and checks every result. */
static void run_host_lua(lua_State *L, int chunk_ref, int n)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, chunk_ref);
    lua_pushinteger(L, n);
    int rc = lua_pcall(L, 1, 6, 0);
    CHECK(rc == 0, "n = %d: the host's Lua failed: %s", n, lua_tostring(L, -1));
    char want[128];
    snprintf(want, sizeof want, "<%d>,<%d>,<%d>,<%d>,<%d>", n, 2 * n, 3 * n, 4 * n, 5 * n);
    const char *g = lua_tostring(L, -6);
    CHECK(g && strcmp(g, want) == 0, "n = %d: string.gsub gave %s, not %s", n, g ? g : "nil", want);
    CHECK(lua_tointeger(L, -5) == 5, "n = %d: string.gsub counted %d, not 5", n,
          (int)lua_tointeger(L, -5));
    CHECK(lua_isboolean(L, -4) && !lua_toboolean(L, -4), "n = %d: pcall(host_fail) succeeded", n);
    snprintf(want, sizeof want, "host_fail %d", n);
    const char *err = lua_tostring(L, -3);
    CHECK(err && strcmp(err, want) == 0, "n = %d: host_fail's error is %s, not %s", n,
          err ? err : "nil", want);
    CHECK(lua_tointeger(L, -2) == 2 * n, "n = %d: the table error's code is %d, not %d", n,
          (int)lua_tointeger(L, -2), 2 * n);
    const char *version = lua_tostring(L, -1);
    CHECK(version && strcmp(version, "Lua 5.1") == 0, "the host's Lua is %s, not PUC Lua 5.1",
          version ? version : "nil");
    lua_pop(L, 6);
}

/* What the policy's rule told the host through its actions. Main thread only: the engine
 * has no timer, so it evaluates only at this thread's explicit checkpoints. */
typedef struct calls {
    int fired, resolved;
    int64_t fired_arg, resolved_arg;
} calls_t;

static int64_t on_fired(int64_t arg, void *ud)
{
    calls_t *c = ud;
    c->fired++;
    c->fired_arg = arg;
    return 0;
}

static int64_t on_resolved(int64_t arg, void *ud)
{
    calls_t *c = ud;
    c->resolved++;
    c->resolved_arg = arg;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: lua_host POLICY.lua\n");
        return 2;
    }
    lua_State *L = luaL_newstate();
    CHECK(L, "luaL_newstate failed");
    luaL_openlibs(L);
    lua_register(L, "host_fail", host_fail);
    CHECK(luaL_loadstring(L, host_chunk) == 0, "the host's chunk does not compile: %s",
          lua_tostring(L, -1));
    int chunk_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    calls_t calls = {0};
    mmt_policy_t *p = mmt_policy_new(NULL); /* no timer, no watch */
    CHECK(p, "mmt_policy_new failed");
    mmt_mem_set_checkpoint(0); /* rules run at this program's checkpoints only */
    CHECK(mmt_policy_action(p, "fired", on_fired, &calls) == 0, "mmt_policy_action failed");
    CHECK(mmt_policy_action(p, "resolved", on_resolved, &calls) == 0, "mmt_policy_action failed");
    CHECK(mmt_policy_load(p, argv[1]) == 0, "the policy does not load: %s", mmt_policy_error(p));

    for (int round = 1; round <= ROUNDS; round++) {
        run_host_lua(L, chunk_ref, round);
        size_t size = (size_t)24 << 20;
        char *big = mmt_malloc(size);
        memset(big, round, size);
        mmt_mem_checkpoint();
        CHECK(calls.fired == round && calls.fired_arg == 21,
              "round %d: the rule fired %d times with %lld, not %d times with 21", round,
              calls.fired, (long long)calls.fired_arg, round);
        run_host_lua(L, chunk_ref, round + 100); /* the host's Lua while the rule is firing */
        mmt_free(big);
        mmt_mem_checkpoint();
        CHECK(calls.resolved == round && calls.resolved_arg == 7,
              "round %d: the rule resolved %d times with %lld, not %d times with 7", round,
              calls.resolved, (long long)calls.resolved_arg, round);
        printf("round %d: host Lua right, policy fired with 21 and resolved with 7\n", round);
    }
    CHECK(mmt_policy_free(p) == 0, "mmt_policy_free failed");
    lua_close(L);
    printf("done\n");
    return 0;
}
