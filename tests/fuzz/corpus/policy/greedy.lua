local mmt = require "mmt"
mmt.rule { name = "d", metric = "rss", above = 1, below = 0, hold = 0, fire = function(m) local t = {} for i = 1, 1e6 do t[i] = i end end }
