local mmt = require "mmt"
mmt.rule { name = "w", when = function(m) return m.in_use > 0 end, fire = function(m) mmt.call("shed", 1) end, resolve = function(m) error("x") end }
