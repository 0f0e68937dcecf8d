local mmt = require "mmt"
mmt.limit("flows", 64 * mmt.MiB)
mmt.limit("flows/histories", nil)
mmt.rule { name = "soft", metric = "in_use", tag = "flows", above = 256, below = 128,
   fire = function(m)
      local t = m.tags["flows"]
      mmt.log("info", "%s of %s", mmt.bytes(t.in_use), tostring(t.limit))
      mmt.reclaim("flows", t.in_use - 128)
      mmt.trim()
   end }
