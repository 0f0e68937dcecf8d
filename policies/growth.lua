-- growth.lua: report sustained growth of memory in use, the usual sign of a leak.
--
-- `rate` is how fast in_use changed over about the last timer interval, in bytes per
-- second. This policy needs the engine's timer (interval_ms > 0): without it rules run only
-- when in_use moves, so growth that stops would never be seen to stop.
--
-- Edit these numbers:
--   rate_limit  growth, in bytes per second, that counts as suspicious
--   hold        seconds the growth must last before it is reported; short bursts (a
--               cache filling, a request peak) are normal and should not be
local mmt = require "mmt"

local rate_limit = 1 * mmt.MiB
local hold = 30

mmt.rule {
   name = "sustained-growth",
   metric = "rate",
   above = rate_limit,
   below = 1,              -- cleared once usage stops growing (under 1 B/s: flat counts)
   hold = hold,
   fire = function(m)
      mmt.log("warn", "memory has grown faster than %s/s for %d s: %s in use, now +%s/s "
              .. "(possible leak)", mmt.bytes(rate_limit), hold, mmt.bytes(m.in_use),
              mmt.bytes(m.rate))
   end,
   resolve = function(m)
      mmt.log("info", "growth stopped: %s in use", mmt.bytes(m.in_use))
   end,
}
