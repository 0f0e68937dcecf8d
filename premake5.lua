-- Build script for mmtmem. Runs under premake5 and under Debian's premake4 (4.3):
--   premake4 --file=premake5.lua gmake && make -C build            (release, the default)
--   make -C build config=debug
--   premake4 --file=premake5.lua --sanitize=address,undefined gmake && make -C build/address-undefined
--   premake4 --file=premake5.lua --backend=mimalloc gmake && make -C build/mimalloc
-- Outputs land in build/<config>/ (libraries and programs), or under build/<variant>/ for
-- a sanitizer or backend build, so that several builds live side by side.

newoption {
   trigger = "sanitize",
   value = "LIST",
   description = "Build with these sanitizers, comma-separated: address,undefined or thread",
}

newoption {
   trigger = "backend",
   value = "NAME",
   description = "The allocator underneath mmt",
   allowed = {
      { "libc", "glibc's malloc (the default)" },
      { "mimalloc", "mimalloc (Debian libmimalloc-dev)" },
      { "jemalloc", "jemalloc (Debian libjemalloc-dev)" },
   },
}

newoption {
   trigger = "prefix",
   value = "DIR",
   description = "Where the install action puts things (default /usr/local; DESTDIR is honoured)",
}

newoption {
   trigger = "fuzz",
   description = "Build only the libFuzzer harnesses (clang, with ASan and UBSan) into build/fuzz",
}

-- Every build but the default one gets its own folder: build/<sanitizers>-<backend>.
local backend = _OPTIONS["backend"] or "libc"
local fuzz = _OPTIONS["fuzz"] ~= nil
local variant = {}
if fuzz then
   table.insert(variant, "fuzz")
   if premake.gcc then premake.gcc.cc = "clang" end -- premake4; premake5 uses toolset below
end
if _OPTIONS["sanitize"] then table.insert(variant, (_OPTIONS["sanitize"]:gsub(",", "-"))) end
if backend ~= "libc" then table.insert(variant, backend) end
local out = #variant > 0 and ("build/" .. table.concat(variant, "-")) or "build"

-- premake4 names what premake5 calls workspace/filter differently; this shim lets the
-- rest of the file use one vocabulary.
local workspace = workspace or solution
local function only(cfg)
   if filter then filter("configurations:" .. cfg) else configuration(cfg) end
end
local function everywhere()
   if filter then filter({}) else configuration("*") end
end
-- Debug information in every configuration (premake4 also strips release builds without it).
local function keep_symbols()
   if symbols then symbols("On") else flags({ "Symbols" }) end
end

local warnings = { "-std=c11", "-Wall", "-Wextra", "-Wshadow", "-Wstrict-prototypes",
                   "-Wmissing-prototypes", "-pthread" }

workspace "mmtmem"
   configurations { "release", "debug" }
   location(out)
   language "C"
   includedirs { "include" } -- the public headers; each project adds the private ones it needs
   defines { "_POSIX_C_SOURCE=200809L" }
   buildoptions(warnings)
   linkoptions { "-pthread" }
   keep_symbols()
   only "release"
      buildoptions { "-O2", "-g" }
      defines { "NDEBUG" }
      targetdir(out .. "/release")
      objdir(out .. "/obj")
   only "debug"
      buildoptions { "-O0", "-g3" }
      targetdir(out .. "/debug")
      objdir(out .. "/obj")
   everywhere()
   if fuzz then
      if toolset then toolset "clang" end
      buildoptions { "-fsanitize=fuzzer-no-link,address,undefined", "-fno-sanitize-recover=all" }
      linkoptions { "-fsanitize=address,undefined" }
   end
   if _OPTIONS["sanitize"] then
      local flag = "-fsanitize=" .. _OPTIONS["sanitize"]
      buildoptions { flag, "-fno-omit-frame-pointer", "-fno-sanitize-recover=all" }
      linkoptions { flag }
   end

-- The policy engine embeds LuaJIT (Debian's libluajit-5.1-dev; pkg-config finds its
-- headers) but never links it: it loads libluajit-5.1.so.2 with dlopen when the first
-- policy loads (lua/lj.h says why), hence libdl.
buildoptions { "`pkg-config --cflags luajit`" }
local core_sources = { "core/*.c", "core/*.h", "lua/*.c", "lua/*.h", "include/mmt/*.h" }
local private = { "core", "lua" } -- the library's private headers: its own sources, and tests
local system_libs = { "dl", "m" }
if backend ~= "libc" then
   defines { "MMT_BACKEND_" .. backend:upper() }
   table.insert(system_libs, 1, backend)
end

-- libmmtmem.a: what the tests and the demo link, so they can reach the test seams.
project "mmtmem-static"
   kind "StaticLib"
   targetname "mmtmem"
   files(core_sources)
   includedirs(private)

if fuzz then
   -- Coverage-guided harnesses, each linking the instrumented static library.
   for _, name in ipairs({ "fuzz_policy", "fuzz_alloc", "fuzz_series" }) do
      project(name)
         kind "ConsoleApp"
         files { "tests/fuzz/" .. name .. ".c" }
         -- mmt-policy's inputs, which fuzz_series reads
         if name == "fuzz_series" then
            files { "tools/series.c", "tools/plot.c" }
            includedirs { "tools" }
         end
         includedirs(private)
         links { "mmtmem-static" }
         links(system_libs)
         linkoptions { "-fsanitize=fuzzer" }
   end
   return
end

-- The version, from the header, for the soname and mmtmem.pc.
local root = path.getabsolute(path.getdirectory(_SCRIPT))
local function read_version()
   local f = assert(io.open(path.join(root, "include/mmt/version.h")))
   local text = f:read("*a")
   f:close()
   local v = {}
   for _, part in ipairs({ "MAJOR", "MINOR", "PATCH" }) do
      v[#v + 1] = text:match("#define MMT_VERSION_" .. part .. " (%d+)")
   end
   return v
end
local version = read_version()
local version_string = table.concat(version, ".")
-- The ABI changes with the minor number before 1.0 (see version.h).
local soname = "libmmtmem.so." .. (version[1] == "0" and ("0." .. version[2]) or version[1])

-- libmmtmem.so: only the mmt_* API is exported. It sits in its own folder so that the
-- programs below, which link -lmmtmem, get the static library; a link named by its soname
-- beside it lets a program linked against it run from the build tree. -z defs: a symbol
-- the library uses and does not define or link (a Lua function missing from lua/lj.h) is
-- a link error, not a symbol the program's Lua would provide at run time.
project "mmtmem-shared"
   kind "SharedLib"
   targetname "mmtmem"
   files(core_sources)
   includedirs(private)
   buildoptions { "-fPIC", "-fvisibility=hidden" }
   linkoptions { "-Wl,-soname," .. soname, "-Wl,-z,defs" }
   links(system_libs)
   for _, cfg in ipairs({ "release", "debug" }) do
      only(cfg)
         targetdir(out .. "/" .. cfg .. "/shared")
         postbuildcommands { "ln -sf libmmtmem.so " .. cfg .. "/shared/" .. soname }
   end
   everywhere()

-- libmmtmem-preload.so: mmt under unmodified programs (LD_PRELOAD). It replaces malloc,
-- so its mmt sits on the next malloc in the program's lookup order (glibc's, or the one
-- the program brings), whatever --backend says.
project "mmtmem-preload"
   kind "SharedLib"
   targetname "mmtmem-preload"
   files(core_sources)
   files { "tools/preload.c", "tools/next.c", "tools/trace.c", "tools/trace.h",
           "tools/report_path.h" }
   includedirs(private) -- preload.c itself takes lua/preload_engine.h, not the engine's header
   defines { "MMT_BACKEND_NEXT" }
   buildoptions { "-fPIC", "-fvisibility=hidden", "-fno-builtin" }
   linkoptions { "-Wl,-z,defs" } -- as libmmtmem.so
   links { "dl", "m" }

-- mmt-run: a program under the preload library, with a policy and a summary. It links the
-- static library to load the policy once itself before the program starts.
project "mmt-run"
   kind "ConsoleApp"
   files { "tools/mmt-run.c", "tools/plot.c", "tools/plot.h", "tools/machine_summary.c",
           "tools/machine_summary.h", "tools/report_path.h" }
   includedirs { "core" } -- fd.h, sys.h, utf8.h
   links { "mmtmem-static" }
   links(system_libs)

-- mmt-policy: checks, tests and replays policies in a virtual engine (lua/virtual.h).
project "mmt-policy"
   kind "ConsoleApp"
   files { "tools/mmt-policy.c", "tools/series.c", "tools/series.h", "tools/plot.c",
           "tools/plot.h", "core/utf8.h" }
   includedirs { "core", "lua" }
   links { "mmtmem-static" }
   links(system_libs)

-- The demo host program: the README's first command runs it.
project "mmt-demo"
   kind "ConsoleApp"
   files { "examples/demo.c" }
   links { "mmtmem-static" }
   links(system_libs)

-- One cmocka program per tests/test_<unit>.c; tests/run runs them all. test_shared, which
-- loads the shared library with dlopen, is made below.
for _, source in ipairs(os.matchfiles("tests/test_*.c")) do
   local unit = path.getbasename(source)
   if unit ~= "test_shared" then
      project(unit)
         kind "ConsoleApp"
         files { source, "tests/testutil.h", "tests/policyutil.h", "tests/procutil.h",
                 "tests/cgrouputil.h" }
         includedirs(private) -- the tests reach the library's seams
         links { "mmtmem-static", "cmocka" }
         links(system_libs)
   end
end

-- The benchmark: prints figures, never fails on a timing.
project "bench"
   kind "ConsoleApp"
   files { "tests/bench/*.c", "tests/bench/*.h" }
   links { "mmtmem-static" }
   links(system_libs)
   links { "dl" }

-- A program that knows nothing of mmt, run under the preload library by test_preload.
project "e2e_threads"
   kind "ConsoleApp"
   files { "tests/e2e/threads.c" }
   links { "dl" }

-- A program that writes into the room malloc_usable_size gives, and forks, run under the
-- preload library by test_preload.
project "e2e_usable"
   kind "ConsoleApp"
   files { "tests/e2e/usable.c" }
   links { "dl" }
   linkoptions { "-pthread" }

-- A program that logs the signals it gets, run under mmt-run by test_mmtrun.
project "e2e_signals"
   kind "ConsoleApp"
   files { "tests/e2e/signals.c" }

-- A program with a Lua of its own (Debian's Lua 5.1, which exports lua_*) that links
-- libmmtmem.so too and runs a policy beside its own Lua code: test_embed runs it, and runs
-- it under mmt-run. Its headers come before LuaJIT's (includedirs precede buildoptions).
-- Built when liblua5.1-0-dev is installed, so that the demo builds without it; test_embed
-- says it skips otherwise.
if os.isfile("/usr/include/lua5.1/lua.h") then
   project "e2e_lua_host"
      kind "ConsoleApp"
      files { "tests/e2e/lua_host.c" }
      includedirs { "/usr/include/lua5.1" }
      links { "mmtmem-shared", "lua5.1" }
      linkoptions { "-Wl,-rpath,'$$ORIGIN/shared'" }
end

-- Memory that rises in steps and falls: test_policytool records and replays it.
project "e2e_phases"
   kind "ConsoleApp"
   files { "tests/e2e/phases.c" }

-- mmt-run's picture code on CSV files test_mmtrun writes.
project "e2e_plot"
   kind "ConsoleApp"
   files { "tests/e2e/plot_csv.c", "tools/plot.c", "tools/plot.h", "core/utf8.h" }
   includedirs { "tools", "core" }
   links { "m" }

-- Loads the shared library with dlopen, so it links neither library.
project "test_shared"
   kind "ConsoleApp"
   files { "tests/test_shared.c", "tests/testutil.h" }
   links { "cmocka", "dl" }
   if dependson then dependson { "mmtmem-shared" } end -- premake5 only; a full build has it anyway

-- install: copies a release build (build it first) under --prefix, as a C library is laid
-- out there; DESTDIR in the environment is put in front, for packagers.
--   premake4 --file=premake5.lua --prefix=/usr/local install
newaction {
   trigger = "install",
   description = "Install the release build's headers, libraries, mmt-run, mmt-policy, policies and mmtmem.pc",
   execute = function()
      local prefix = _OPTIONS["prefix"] or "/usr/local"
      local dest = (os.getenv("DESTDIR") or "") .. prefix
      local bin = root .. "/" .. out .. "/release"
      local function sh(cmd)
         local ok = os.execute(cmd)
         if ok ~= true and ok ~= 0 then error("install: failed: " .. cmd, 0) end
      end
      local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
      for _, f in ipairs({ bin .. "/libmmtmem.a", bin .. "/shared/libmmtmem.so",
                           bin .. "/libmmtmem-preload.so", bin .. "/mmt-run",
                           bin .. "/mmt-policy" }) do
         if not os.isfile(f) then
            error("install: " .. f .. " is missing: build first (make -C " .. out .. ")", 0)
         end
      end
      local real = "libmmtmem.so." .. version_string
      sh("install -d " .. q(dest .. "/include/mmt") .. " " .. q(dest .. "/lib/pkgconfig") .. " " ..
         q(dest .. "/lib/mmtmem") .. " " .. q(dest .. "/bin") .. " " .. q(dest .. "/share/mmtmem/policies"))
      sh("install -m 644 " .. q(root) .. "/include/mmt/*.h " .. q(dest .. "/include/mmt"))
      sh("install -m 644 " .. q(bin .. "/libmmtmem.a") .. " " .. q(dest .. "/lib"))
      sh("install -m 755 " .. q(bin .. "/shared/libmmtmem.so") .. " " .. q(dest .. "/lib/" .. real))
      sh("ln -sf " .. real .. " " .. q(dest .. "/lib/" .. soname))
      sh("ln -sf " .. soname .. " " .. q(dest .. "/lib/libmmtmem.so"))
      sh("install -m 755 " .. q(bin .. "/libmmtmem-preload.so") .. " " .. q(dest .. "/lib/mmtmem"))
      sh("install -m 755 " .. q(bin .. "/mmt-run") .. " " .. q(bin .. "/mmt-policy") .. " " ..
         q(dest .. "/bin"))
      -- The policies, not their tests (policies/*_test.lua), which stay with the sources.
      for _, f in ipairs(os.matchfiles(root .. "/policies/*.lua")) do
         if not f:find("_test%.lua$") then
            sh("install -m 644 " .. q(f) .. " " .. q(dest .. "/share/mmtmem/policies"))
         end
      end

      -- mmtmem.pc: the shared library by default; --static adds what libmmtmem.a needs.
      -- LuaJIT is loaded at run time (lua/lj.h): nothing to link, nor a Requires.
      local private = {}
      for _, lib in ipairs(system_libs) do private[#private + 1] = "-l" .. lib end
      local pc = assert(io.open(dest .. "/lib/pkgconfig/mmtmem.pc", "w"))
      pc:write("prefix=" .. prefix .. "\n",
               "libdir=${prefix}/lib\n",
               "includedir=${prefix}/include\n\n",
               "Name: mmtmem\n",
               "Description: Memory counters, listeners and Lua policies for C programs\n",
               "Version: " .. version_string .. "\n",
               "Libs: -L${libdir} -lmmtmem\n",
               "Libs.private: " .. table.concat(private, " ") .. " -pthread\n",
               "Cflags: -I${includedir}\n")
      pc:close()
      print("installed mmtmem " .. version_string .. " under " .. dest)
   end,
}
