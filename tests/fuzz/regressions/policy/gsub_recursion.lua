-- Recursion through a C function (string.gsub calling back into Lua): once overflowed the
-- C stack at load; now stopped by the engine's C stack floor with an error.
local function f(s) return (s:gsub('.', f)) end
f('x')
