-- container.lua: act before the memory cgroup's limit, not at it.
--
-- In a container (or a systemd service with MemoryMax=), the limit that kills the program
-- is its cgroup's, which counts more than the program's own heap: its page cache, its
-- kernel memory, the other processes of the cgroup. The kernel's OOM killer acts at the
-- limit; this policy acts before it, on the cgroup's own figures (m.cgroup):
--
--   cgroup-high  above `warn_at` of the limit: a warning, with where the memory is (the
--                program's heap as mmt counts it, and the rest of the cgroup).
--   cgroup-full  above `act_at` of the limit: the program's reclaimers are asked to free
--                what would bring the cgroup back to `warn_at` (mmt.reclaim on the whole
--                program), then the allocator's free memory goes back to the system
--                (mmt.trim), which is what lowers the cgroup's charge.
--   cgroup-eta   the heap is on course to fill what the cgroup leaves it within `eta_warn`
--                seconds: a warning, while there is still time to act. The course is
--                m.eta, a straight line fitted to the last minute of in_use (trend_window_s):
--                a burst alone does not make it, as the rule also asks for a floor (the heap
--                above `eta_floor` of its room) and for the course to hold `eta_hold`
--                seconds.
--
-- "The limit" is m.cgroup.limit: the lowest memory.max (v1: limit_in_bytes) of the cgroup
-- and those above it. Outside a cgroup, or in one with no limit, the rules never fire.
--
-- At a checkpoint (inside an allocation) the kernel has not yet charged the pages being
-- allocated, so the cgroup's figure lags the program's; the timer sees it. mmt.reclaim
-- and mmt.trim run on the engine's thread: asked at a checkpoint, they are deferred
-- ("deferred" in the log), and the thread runs them at once.
--
-- Run a program under it: mmt-run --policy policies/container.lua -- PROGRAM
-- (mmt-run's default timer, 1 s, is the one that sees the cgroup's own figure move.)
local mmt = require "mmt"

local warn_at, act_at = 0.80, 0.90   -- fractions of the cgroup's limit
local eta_warn = 300                 -- seconds
local eta_floor, eta_hold = 0.5, 5   -- fraction of the heap's room, seconds

local function mib(bytes) return string.format("%.1f MiB", bytes / mmt.MiB) end

-- Where the cgroup's memory is: the program's heap, and the rest.
local function breakdown(m)
   local c = m.cgroup
   return string.format("cgroup %s of %s (%.0f%%): heap %s, the rest %s", mib(c.current),
                        mib(c.limit), 100 * c.current / c.limit, mib(m.in_use),
                        mib(math.max(c.current - m.in_use, 0)))
end

mmt.rule {
   name = "cgroup-high", metric = "cgroup_ratio", above = warn_at, below = warn_at - 0.05,
   fire = function(m) mmt.log("warn", "cgroup-high: %s", breakdown(m)) end,
   resolve = function(m) mmt.log("info", "cgroup-high cleared: %s", breakdown(m)) end,
}

mmt.rule {
   name = "cgroup-full", metric = "cgroup_ratio", above = act_at, below = act_at - 0.05,
   fire = function(m)
      local c = m.cgroup
      local want = c.current - warn_at * c.limit
      local freed, why = mmt.reclaim("", want)
      local trimmed = mmt.trim()
      if freed then
         mmt.log("warn", "cgroup-full: %s; reclaimed %s, trimmed %s", breakdown(m), mib(freed),
                 mib(trimmed))
      else -- at a checkpoint: the engine's thread runs them, and logs what they did
         mmt.log("warn", "cgroup-full: %s; reclaim and trim: %s", breakdown(m), why)
      end
   end,
   resolve = function(m) mmt.log("info", "cgroup-full cleared: %s", breakdown(m)) end,
}

-- The heap's room: the limit less what the rest of the cgroup holds now.
local function room(m)
   local c = m.cgroup
   if not c or c.limit == math.huge then return nil end
   return c.limit - math.max(c.current - m.in_use, 0)
end

mmt.rule {
   name = "cgroup-eta", hold = eta_hold,
   when = function(m)
      local r = room(m)
      return r ~= nil and m.in_use > eta_floor * r and m.eta(r) < eta_warn
   end,
   fire = function(m)
      local r = room(m)
      mmt.log("warn", "cgroup-eta: the heap (%s) fills its room (%s) in %.0f s at its course; %s",
              mib(m.in_use), mib(r), m.eta(r), breakdown(m))
   end,
   resolve = function(m) mmt.log("info", "cgroup-eta cleared: %s", breakdown(m)) end,
}
