-- high_water.lua: warn when memory in use passes a high-water mark, and say when it is
-- back to normal.
--
-- Edit these numbers:
--   high  the mark that raises the warning
--   low   the level usage must fall under before the warning is cleared; keeping it
--         below `high` stops a program that hovers at the mark from flapping
--   hold  seconds usage must stay above `high` before warning (0: at once)
local mmt = require "mmt"

local high = 256 * mmt.MiB
local low = 200 * mmt.MiB
local hold = 0

mmt.rule {
   name = "high-water",
   metric = "in_use",
   above = high,
   below = low,
   hold = hold,
   fire = function(m)
      mmt.log("warn", "high-water: %s in use, above %s (peak %s)",
              mmt.bytes(m.in_use), mmt.bytes(high), mmt.bytes(m.peak))
   end,
   resolve = function(m)
      mmt.log("info", "high-water cleared: %s in use, under %s", mmt.bytes(m.in_use), mmt.bytes(low))
   end,
}
