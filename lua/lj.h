/*
 * Private to the policy engine: LuaJIT, reached through a table of function pointers
 * instead of by linking it. The engine's files include this header instead of the Lua
 * headers and are written against the ordinary Lua API: every function they use is a
 * macro for the table's member (lua_pop(L, 1) is lua_settop(L, -2), which is
 * mmt__lj.lua_settop(L, -2)).
 *
 * Why: a program may carry a Lua of its own (Redis, HAProxy, nginx's Lua module, Neovim,
 * a game engine) and export its lua_* functions. Had the library linked LuaJIT, the
 * dynamic linker would bind the library's lua_* references, and LuaJIT's calls of its own
 * exported functions, to the program's Lua, which comes first in the global scope: the
 * preload library crashed Redis before main. mmt__lj_load() loads LuaJIT with dlopen,
 * local (its symbols stay out of the global scope) and deep-bound (its calls of its own
 * functions stay inside it), and fills the table with dlsym on that handle. So
 * libmmtmem.so and libmmtmem-preload.so export only mmt_* and import no Lua symbol; the
 * LuaJIT library (Debian's libluajit-5.1-2) is needed at run time, when the first policy
 * loads, not to start a program.
 *
 * MMT__LJ_FUNCTIONS lists exactly the functions the engine uses, as the headers declare
 * them (lj.c checks each against its declaration at compile time). A function used but
 * not listed is the real LuaJIT symbol, which nothing links: the build stops at an
 * undefined reference (the shared libraries link with -z defs; every program that links
 * libmmtmem.a fails likewise).
 */
#ifndef MMT_LUA_LJ_H
#define MMT_LUA_LJ_H

#include <stddef.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <luajit.h>

/* The file dlopen looks for: the soname of Debian's libluajit-5.1-2. */
#define MMT__LJ_LIBRARY "libluajit-5.1.so.2"

/* X(return type, name, parameters), in the headers' order: lua.h, lauxlib.h, lualib.h,
 * luajit.h. */
#define MMT__LJ_FUNCTIONS(X)                                                               \
    X(lua_State *, lua_newstate, (lua_Alloc f, void *ud))                                  \
    X(void, lua_close, (lua_State *L))                                                     \
    X(lua_CFunction, lua_atpanic, (lua_State *L, lua_CFunction panicf))                    \
    X(int, lua_gettop, (lua_State *L))                                                     \
    X(void, lua_settop, (lua_State *L, int idx))                                           \
    X(void, lua_pushvalue, (lua_State *L, int idx))                                        \
    X(void, lua_insert, (lua_State *L, int idx))                                           \
    X(void, lua_replace, (lua_State *L, int idx))                                          \
    X(int, lua_type, (lua_State *L, int idx))                                              \
    X(int, lua_isnumber, (lua_State *L, int idx))                                          \
    X(const char *, lua_typename, (lua_State *L, int tp))                                  \
    X(lua_Number, lua_tonumber, (lua_State *L, int idx))                                   \
    X(int, lua_toboolean, (lua_State *L, int idx))                                         \
    X(const char *, lua_tolstring, (lua_State *L, int idx, size_t *len))                   \
    X(size_t, lua_objlen, (lua_State *L, int idx))                                         \
    X(void *, lua_touserdata, (lua_State *L, int idx))                                     \
    X(const void *, lua_topointer, (lua_State *L, int idx))                                \
    X(void, lua_pushnil, (lua_State *L))                                                   \
    X(void, lua_pushnumber, (lua_State *L, lua_Number n))                                  \
    X(void, lua_pushlstring, (lua_State *L, const char *s, size_t l))                      \
    X(void, lua_pushstring, (lua_State *L, const char *s))                                 \
    X(const char *, lua_pushfstring, (lua_State *L, const char *fmt, ...))                 \
    X(void, lua_pushcclosure, (lua_State *L, lua_CFunction fn, int n))                     \
    X(void, lua_pushboolean, (lua_State *L, int b))                                        \
    X(void, lua_pushlightuserdata, (lua_State *L, void *p))                                \
    X(void, lua_getfield, (lua_State *L, int idx, const char *k))                          \
    X(void, lua_rawget, (lua_State *L, int idx))                                           \
    X(void, lua_rawgeti, (lua_State *L, int idx, int n))                                   \
    X(void, lua_createtable, (lua_State *L, int narr, int nrec))                           \
    X(void *, lua_newuserdata, (lua_State *L, size_t sz))                                  \
    X(void, lua_setfield, (lua_State *L, int idx, const char *k))                          \
    X(void, lua_rawset, (lua_State *L, int idx))                                           \
    X(void, lua_rawseti, (lua_State *L, int idx, int n))                                   \
    X(int, lua_getmetatable, (lua_State *L, int objindex))                                 \
    X(int, lua_setmetatable, (lua_State *L, int objindex))                                 \
    X(void, lua_call, (lua_State *L, int nargs, int nresults))                             \
    X(int, lua_pcall, (lua_State *L, int nargs, int nresults, int errfunc))                \
    X(int, lua_cpcall, (lua_State *L, lua_CFunction func, void *ud))                       \
    X(int, lua_gc, (lua_State *L, int what, int data))                                     \
    X(int, lua_error, (lua_State *L))                                                      \
    X(int, lua_next, (lua_State *L, int idx))                                              \
    X(void, lua_concat, (lua_State *L, int n))                                             \
    X(lua_Alloc, lua_getallocf, (lua_State *L, void **ud))                                 \
    X(int, lua_getstack, (lua_State *L, int level, lua_Debug *ar))                         \
    X(int, lua_getinfo, (lua_State *L, const char *what, lua_Debug *ar))                   \
    X(int, lua_sethook, (lua_State *L, lua_Hook func, int mask, int count))                \
    X(void, luaL_where, (lua_State *L, int lvl))                                           \
    X(int, luaL_error, (lua_State *L, const char *fmt, ...))                               \
    X(int, luaL_argerror, (lua_State *L, int numarg, const char *extramsg))                \
    X(const char *, luaL_checklstring, (lua_State *L, int numArg, size_t *l))              \
    X(lua_Number, luaL_checknumber, (lua_State *L, int numArg))                            \
    X(lua_Number, luaL_optnumber, (lua_State *L, int nArg, lua_Number def))                \
    X(void, luaL_checktype, (lua_State *L, int narg, int t))                               \
    X(void, luaL_checkany, (lua_State *L, int narg))                                       \
    X(int, luaL_checkoption, (lua_State *L, int narg, const char *def, const char *const lst[])) \
    X(int, luaL_ref, (lua_State *L, int t))                                                \
    X(int, luaL_loadbuffer, (lua_State *L, const char *buff, size_t sz, const char *name)) \
    X(void, luaL_buffinit, (lua_State *L, luaL_Buffer *B))                                 \
    X(char *, luaL_prepbuffer, (luaL_Buffer *B))                                           \
    X(void, luaL_addvalue, (luaL_Buffer *B))                                               \
    X(void, luaL_pushresult, (luaL_Buffer *B))                                             \
    X(int, luaopen_base, (lua_State *L))                                                   \
    X(int, luaopen_math, (lua_State *L))                                                   \
    X(int, luaopen_string, (lua_State *L))                                                 \
    X(int, luaopen_table, (lua_State *L))                                                  \
    X(int, luaopen_os, (lua_State *L))                                                     \
    X(int, luaopen_bit, (lua_State *L))                                                    \
    X(void, luaL_openlibs, (lua_State *L))                                                 \
    X(int, luaJIT_setmode, (lua_State *L, int idx, int mode))

/* Filled once by mmt__lj_load and never changed after: read without a lock by every
 * thread that got 0 from mmt__lj_load (its pthread_once orders the writes before). */
typedef struct mmt__lj {
#define MMT__LJ_MEMBER(ret, name, params) ret (*name) params;
    MMT__LJ_FUNCTIONS(MMT__LJ_MEMBER)
#undef MMT__LJ_MEMBER
} mmt__lj_t;

extern mmt__lj_t mmt__lj;

/* Loads LuaJIT and fills mmt__lj, once per process; later calls return the first one's
 * result. 0 on success; otherwise -1 with "cannot load LuaJIT (libluajit-5.1.so.2): why"
 * in err (cut to errlen). Any thread; call it before any other Lua function. The library
 * stays loaded until the process ends. */
int mmt__lj_load(char *err, size_t errlen);

/* The API names, after the headers, whose declarations (`LUA_API void (lua_settop) (...)`)
 * an earlier object-like macro would break. lj.c, which fills the table, does without. */
#ifndef MMT__LJ_NO_NAMES
#define lua_newstate mmt__lj.lua_newstate
#define lua_close mmt__lj.lua_close
#define lua_atpanic mmt__lj.lua_atpanic
#define lua_gettop mmt__lj.lua_gettop
#define lua_settop mmt__lj.lua_settop
#define lua_pushvalue mmt__lj.lua_pushvalue
#define lua_insert mmt__lj.lua_insert
#define lua_replace mmt__lj.lua_replace
#define lua_type mmt__lj.lua_type
#define lua_isnumber mmt__lj.lua_isnumber
#define lua_typename mmt__lj.lua_typename
#define lua_tonumber mmt__lj.lua_tonumber
#define lua_toboolean mmt__lj.lua_toboolean
#define lua_tolstring mmt__lj.lua_tolstring
#define lua_objlen mmt__lj.lua_objlen
#define lua_touserdata mmt__lj.lua_touserdata
#define lua_topointer mmt__lj.lua_topointer
#define lua_pushnil mmt__lj.lua_pushnil
#define lua_pushnumber mmt__lj.lua_pushnumber
#define lua_pushlstring mmt__lj.lua_pushlstring
#define lua_pushstring mmt__lj.lua_pushstring
#define lua_pushfstring mmt__lj.lua_pushfstring
#define lua_pushcclosure mmt__lj.lua_pushcclosure
#define lua_pushboolean mmt__lj.lua_pushboolean
#define lua_pushlightuserdata mmt__lj.lua_pushlightuserdata
#define lua_getfield mmt__lj.lua_getfield
#define lua_rawget mmt__lj.lua_rawget
#define lua_rawgeti mmt__lj.lua_rawgeti
#define lua_createtable mmt__lj.lua_createtable
#define lua_newuserdata mmt__lj.lua_newuserdata
#define lua_setfield mmt__lj.lua_setfield
#define lua_rawset mmt__lj.lua_rawset
#define lua_rawseti mmt__lj.lua_rawseti
#define lua_getmetatable mmt__lj.lua_getmetatable
#define lua_setmetatable mmt__lj.lua_setmetatable
#define lua_call mmt__lj.lua_call
#define lua_pcall mmt__lj.lua_pcall
#define lua_cpcall mmt__lj.lua_cpcall
#define lua_gc mmt__lj.lua_gc
#define lua_error mmt__lj.lua_error
#define lua_next mmt__lj.lua_next
#define lua_concat mmt__lj.lua_concat
#define lua_getallocf mmt__lj.lua_getallocf
#define lua_getstack mmt__lj.lua_getstack
#define lua_getinfo mmt__lj.lua_getinfo
#define lua_sethook mmt__lj.lua_sethook
#define luaL_where mmt__lj.luaL_where
#define luaL_error mmt__lj.luaL_error
#define luaL_argerror mmt__lj.luaL_argerror
#define luaL_checklstring mmt__lj.luaL_checklstring
#define luaL_checknumber mmt__lj.luaL_checknumber
#define luaL_optnumber mmt__lj.luaL_optnumber
#define luaL_checktype mmt__lj.luaL_checktype
#define luaL_checkany mmt__lj.luaL_checkany
#define luaL_checkoption mmt__lj.luaL_checkoption
#define luaL_ref mmt__lj.luaL_ref
#define luaL_loadbuffer mmt__lj.luaL_loadbuffer
#define luaL_buffinit mmt__lj.luaL_buffinit
#define luaL_prepbuffer mmt__lj.luaL_prepbuffer
#define luaL_addvalue mmt__lj.luaL_addvalue
#define luaL_pushresult mmt__lj.luaL_pushresult
#define luaopen_base mmt__lj.luaopen_base
#define luaopen_math mmt__lj.luaopen_math
#define luaopen_string mmt__lj.luaopen_string
#define luaopen_table mmt__lj.luaopen_table
#define luaopen_os mmt__lj.luaopen_os
#define luaopen_bit mmt__lj.luaopen_bit
#define luaL_openlibs mmt__lj.luaL_openlibs
#define luaJIT_setmode mmt__lj.luaJIT_setmode

/* Each listed function has its name above: one left out would call the real symbol. */
#define MMT__LJ_HAS_NAME(ret, name, params)                                                \
    _Static_assert(__builtin_types_compatible_p(__typeof__(name), ret(*) params),          \
                   "lj.h: " #name " is listed but has no #define");
MMT__LJ_FUNCTIONS(MMT__LJ_HAS_NAME)
#undef MMT__LJ_HAS_NAME
#endif

#endif
