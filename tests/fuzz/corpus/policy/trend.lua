local mmt = require "mmt"
local L = 64 * mmt.MiB
local m0 = mmt.meminfo()
mmt.log("info", "%s %s", m0.eta(L), m0:predict(1))
mmt.rule { name = "soon", when = function(m) return m.in_use > 0.5 * L and m.eta(L) < 300 end,
   hold = 0.01,
   fire = function(m) mmt.log("warn", "%s in %.1f s, %s", mmt.bytes(L), m:eta(L), m.predict(-1)) end }
mmt.every(0.01, function(m) pcall(m.eta, "x") mmt.log("info", "%s", m.predict(math.huge)) end)
