local mmt = require "mmt"
mmt.every(0.0001, function(m) mmt.log("info", "%s", mmt.bytes(m.rate)) end)
