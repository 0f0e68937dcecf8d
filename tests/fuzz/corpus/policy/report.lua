-- report.lua: one line about memory every few seconds.
--
-- Needs the engine's timer (interval_ms > 0).
--
-- Edit this number:
--   every  seconds between two reports
local mmt = require "mmt"

local every = 10

mmt.every(every, function(m)
   mmt.log("info", "%s in use, peak %s, rss %s, %+.0f B/s, %d live blocks",
           mmt.bytes(m.in_use), mmt.bytes(m.peak), mmt.bytes(m.rss), m.rate,
           m.allocations - m.frees)
end)
