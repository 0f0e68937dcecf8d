-- budget.lua: a memory budget for each part of the program that has a tag of its own.
--
-- Each tag listed in `budgets` gets two limits on its subtree's memory in use:
--
--   a hard limit (mmt.limit)  an allocation that would take the tag above it first runs
--                             the program's reclaimers for the tag; if they cannot make
--                             room, it fails: mmt_malloc aborts (mmt_try_malloc returns
--                             NULL). Set it where the program had better stop than grow.
--   a soft limit (a rule)     above `soft` of the hard limit, the policy acts first:
--                               1. reclaim: mmt.reclaim asks the tag's reclaimers to free
--                                  memory down to `target` of the limit;
--                               2. still above `soft`: trim, mmt.trim gives the allocator's
--                                  free memory back to the system (it frees no block: the
--                                  tag's own figure stays, the process's resident size falls);
--                               3. still above `soft`: warn, the reclaimers could not free
--                                  enough.
--                             The rule is ready again once the tag is under `resume`.
--
-- The rule is judged at every checkpoint and tick. At a tick (on the engine's thread) it
-- climbs the whole ladder at once. At an allocation checkpoint the program's reclaimers
-- must not run (that thread may hold what they need): mmt.reclaim and mmt.trim return nil,
-- "deferred" there, and the engine's thread runs them soon after. The rule then climbs no
-- further on that evaluation: the next one sees what the step did, and goes on from there.
-- An engine without a thread (no interval_ms, no watch) has none to run them: the log
-- says so, and at checkpoints the soft limit only warns.
--
-- The engine logs every reclaim (who freed what, and how long it took). The limits are
-- the policy's own: edit a number and save, and the new limit applies; remove a tag from
-- `budgets` and its hard limit is given back (to none, or to what the program had set).
--
-- Tags are paths, as m.tags has them: "cache/pages". A program may not have every tag
-- listed here: a tag it has not made when the policy loads gets no hard limit (said in
-- the log) until the next load; its soft limit starts once the program makes it.
--
-- Needs the program's reclaimers (mmt_reclaimer_add) for the tags: without any, a reclaim
-- frees nothing and the soft limit only warns. mmt-demo has one for "flows":
--   mmt-demo --policy policies/budget.lua
--
-- Edit these numbers:
--   budgets  the hard limit of each tag, in bytes
--   soft     the fraction of the hard limit above which the policy reclaims
--   target   the fraction of it a reclaim aims for
--   resume   the fraction under which the soft limit is ready to act again (between
--            target and soft, so that a tag that hovers at `soft` is not reclaimed at
--            every checkpoint)
local mmt = require "mmt"

local budgets = {
   ["flows"] = 40 * mmt.MiB,           -- mmt-demo's flow table
   ["cache"] = 256 * mmt.MiB,
   ["http/buffers"] = 64 * mmt.MiB,
}
local soft, target, resume = 0.8, 0.6, 0.7

local exists = {}
for _, path in ipairs(mmt.tags()) do exists[path] = true end

-- In path order, so that the log says them in the same order at every load.
local paths = {}
for path in pairs(budgets) do paths[#paths + 1] = path end
table.sort(paths)

-- The tag's in_use now (a snapshot is from before the step the rule just took).
local function in_use_now(path)
   local t = mmt.meminfo().tags[path]
   return t and t.in_use or 0
end

-- Takes one step, fn(...) (mmt.reclaim or mmt.trim): returns what it gave, or nil if the engine's
-- thread takes it ("deferred": the next evaluation sees what it did). A step that cannot
-- be taken at all is said, and counts as having given nothing.
local function step(path, fn, ...)
   local got, err = fn(...)
   if got then return got end
   if err == "deferred" then return nil end
   mmt.log("warn", "budget %s: %s", path, err)
   return 0
end

-- The soft limit of one tag: a rule whose `when` follows the tag at every evaluation and
-- climbs the ladder. `rung` is the step to take next ("reclaim", "trim", "warn"), nil while
-- the tag is under `soft` (and again once it has been under `resume`), "done" once the
-- ladder is climbed; `was` is the in_use that passed `soft`.
local function soft_limit(path, limit)
   local rung, was, freed, trimmed

   -- Goes up from the tag's in_use `used` until it is under `soft` again, or the ladder is
   -- climbed, or a step waits for the engine's thread.
   local function climb(used)
      if rung == "reclaim" then
         rung = "trim"
         freed = step(path, mmt.reclaim, path, used - target * limit)
         if not freed then return end -- deferred: the next evaluation sees what it freed
         used = in_use_now(path)
      end
      freed = freed or math.max(was - used, 0) -- a deferred reclaim's, as measured
      if used <= soft * limit then
         mmt.log("info", "budget %s: %s in use was over %.0f%% of its limit %s; reclaimed %s, "
                 .. "now %s", path, mmt.bytes(was), 100 * soft, mmt.bytes(limit),
                 mmt.bytes(freed), mmt.bytes(used))
         rung = "done"
         return
      end
      if rung == "trim" then
         rung = "warn"
         trimmed = step(path, mmt.trim)
         if not trimmed then return end -- deferred: the engine logs what it gave back
         used = in_use_now(path)
         if used <= soft * limit then
            mmt.log("info", "budget %s: back to %s after a reclaim of %s and a trim", path,
                    mmt.bytes(used), mmt.bytes(freed))
            rung = "done"
            return
         end
      end
      mmt.log("warn", "budget %s: still %s in use, %.0f%% of its limit %s: reclaiming freed "
              .. "only %s (%s)", path, mmt.bytes(used), 100 * used / limit, mmt.bytes(limit),
              mmt.bytes(freed), trimmed and "trimming gave " .. mmt.bytes(trimmed)
                 .. " back to the system" or "the engine logged what trimming gave back")
      rung = "done"
   end

   mmt.rule {
      name = "budget " .. path,
      when = function(m)
         local t = m.tags[path]
         local used = t and t.in_use or 0
         if not rung and used > soft * limit then
            rung, was, freed, trimmed = "reclaim", used, nil, nil
         end
         if rung and rung ~= "done" then climb(used) end
         if used < resume * limit then rung = nil end
         return rung ~= nil
      end,
      fire = function(m) end, -- the ladder is climbed in `when`, over one evaluation or more
   }
end

for _, path in ipairs(paths) do
   local limit = budgets[path]
   if exists[path] then
      mmt.limit(path, limit)
   else
      mmt.log("info", "budget: this program has no tag \"%s\" (yet): no hard limit on it "
              .. "until the policy is loaded again", path)
   end
   soft_limit(path, limit)
end
