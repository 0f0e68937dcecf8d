-- Tests of container.lua, on the cgroup's figures (ratio = cgroup_current / cgroup_limit):
--   cgroup-high  ratio > 0.80 fires (a warning), < 0.75 resolves
--   cgroup-full  ratio > 0.90 fires (reclaims the whole process down to 0.80 of the limit,
--                then trims: both a dry run here), < 0.85 resolves
--   cgroup-eta   (a when rule, hold 5 s) room = limit - (cgroup_current - in_use); holds while
--                in_use > 0.5 * room and m.eta(room) < 300 s (m.eta: the straight line fitted
--                to the last minute of in_use)
-- Without a cgroup, or with no limit, no rule holds.
--   mmt-policy test policies/container_test.lua
local t = require "mmt.test"

t.case {
   name = "cgroup-high: warns above 80% of the limit, with where the memory is; clears under 75%",
   policy = "container.lua",
   series = {
      cgroup_max = "1GiB",                  -- the limit (cgroup_limit defaults to it)
      -- t=0..4: 700 + 50 t MiB; t=5..7: 780; t=8: 760
      cgroup_current = "700MiB+50MiBx4 780MiBx2 760MiB",
      in_use = "300MiB",                    -- flat: no course, no cgroup-eta
   },
   expect = {
      -- 800 / 1024 = 0.781 is not > 0.80; 850 / 1024 = 0.830 is (900 / 1024 = 0.879: not full)
      { at = 3, fire = "cgroup-high" },
      { at = 3, log = "warn", match = "^cgroup%-high: cgroup 850%.0 MiB of 1024%.0 MiB %(83%%%): heap 300%.0 MiB, the rest 550%.0 MiB$" },
      -- 780 / 1024 = 0.762 is not < 0.75; 760 / 1024 = 0.742 is
      { at = 8, resolve = "cgroup-high" },
      { at = 8, log = "info", match = "^cgroup%-high cleared: cgroup 760%.0 MiB of 1024%.0 MiB %(74%%%): heap 300%.0 MiB, the rest 460%.0 MiB$" },
   },
}

t.case {
   name = "cgroup-full: above 90% reclaims down to 80% and trims; clears under 85%",
   policy = "container.lua",
   series = {
      cgroup_max = "1GiB",
      -- t=0: 800, t=1: 930, t=2: 900, t=3: 880, t=4: 860, t=5: 870, t=6: 700 MiB
      cgroup_current = "800MiB 930MiB 900MiB 880MiB 860MiB 870MiB 700MiB",
      in_use = "600MiB",
   },
   expect = {
      -- 930 / 1024 = 0.908: above 0.80 and 0.90 at once
      { at = 1, fire = "cgroup-high" },
      { at = 1, fire = "cgroup-full" },
      -- wants 930 MiB - 0.8 * 1024 MiB = 930 - 819.2 = 110.8 MiB (dry run: said, gives 0)
      { at = 1, log = "info", match = "dry run: would reclaim 110%.8 MiB of the whole process$" },
      { at = 1, log = "info", match = "dry run: would trim$" },
      { at = 1, log = "warn", match = "^cgroup%-full: cgroup 930%.0 MiB of 1024%.0 MiB %(91%%%): heap 600%.0 MiB, the rest 330%.0 MiB; reclaimed 0%.0 MiB, trimmed 0%.0 MiB$" },
      -- 900 / 1024 = 0.879 and 880 / 1024 = 0.859 are not < 0.85; 860 / 1024 = 0.840 is
      { at = 4, resolve = "cgroup-full" },
      { at = 4, log = "info", match = "^cgroup%-full cleared: cgroup 860%.0 MiB of 1024%.0 MiB %(84%%%)" },
      -- t=5: 870 / 1024 = 0.850, not > 0.90: cgroup-full stays quiet
      { at = 6, resolve = "cgroup-high" },  -- 700 / 1024 = 0.684 < 0.75
   },
}

t.case {
   name = "the limit is cgroup_limit (a parent's memory.max), not the cgroup's own max",
   policy = "container.lua",
   series = {
      cgroup_max = "Inf",                   -- no memory.max of its own
      cgroup_limit = "512MiB",              -- a parent's
      cgroup_current = "400MiB 420MiB",
      in_use = "100MiB",
   },
   expect = {
      { at = 1, fire = "cgroup-high" },     -- 400 / 512 = 0.781 is not > 0.80; 420 / 512 = 0.820 is
      { at = 1, log = "warn", match = "cgroup 420%.0 MiB of 512%.0 MiB %(82%%%)" },
   },
}

t.case {
   name = "outside a cgroup no rule holds, however fast the heap grows",
   policy = "container.lua",
   -- 1 GiB + 100 MiB a second for 30 s: no m.cgroup at all
   series = { in_use = "1GiB+100MiBx30" },
   expect_none = true,
}

t.case {
   name = "in a cgroup with no limit no rule holds",
   policy = "container.lua",
   series = {
      cgroup_current = "2GiB+100MiBx30",    -- cgroup_max not given: unlimited (math.huge)
      in_use = "1GiB+100MiBx30",
   },
   expect_none = true,
}

t.case {
   name = "cgroup-eta: the heap on course to fill its room in under 300 s for 5 s warns",
   policy = "container.lua",
   series = {
      cgroup_max = "1GiB",
      -- t=0..20: 450 + 2 t MiB; t=21: 300 MiB. The cgroup: the heap and 100 MiB more.
      in_use = "450MiB+2MiBx20 300MiB",
      cgroup_current = "550MiB+2MiBx20 400MiB",
   },
   expect = {
      -- room = 1024 - 100 = 924 MiB, floor 0.5 * 924 = 462 MiB: 450 + 6 * 2 = 462 is not
      -- above it, 450 + 7 * 2 = 464 is; the course (2 MiB/s) reaches 924 MiB in
      -- (924 - 464) / 2 = 230 s < 300. Holds from t=7: fires at 7 + 5 = 12, heap 474 MiB,
      -- (924 - 474) / 2 = 225 s; the cgroup 574 MiB, 574 / 1024 = 56%
      { at = 12, fire = "cgroup-eta" },
      { at = 12, log = "warn", match = "^cgroup%-eta: the heap %(474%.0 MiB%) fills its room %(924%.0 MiB%) in 225 s at its course; cgroup 574%.0 MiB of 1024%.0 MiB %(56%%%)" },
      -- t=21: 300 MiB is under the floor (462 MiB): cleared
      { at = 21, resolve = "cgroup-eta" },
      { at = 21, log = "info", match = "^cgroup%-eta cleared: cgroup 400%.0 MiB of 1024%.0 MiB %(39%%%): heap 300%.0 MiB, the rest 100%.0 MiB$" },
   },
}

t.case {
   name = "cgroup-eta: hold not yet met, 4 s on course then a drop",
   policy = "container.lua",
   series = {
      cgroup_max = "1GiB",
      -- t=0..11: 450 + 2 t MiB; t=12: 300 MiB
      in_use = "450MiB+2MiBx11 300MiB",
      cgroup_current = "550MiB+2MiBx11 400MiB",
   },
   -- holds from t=7 (464 MiB > 462) to t=11: 11 - 7 = 4 s < 5; t=12 is under the floor
   expect_none = true,
}

t.case {
   name = "cgroup-eta: a fast course from low down is not enough (the floor)",
   policy = "container.lua",
   series = {
      cgroup_max = "1GiB",
      -- t=0..30: 100 + 10 t MiB, the cgroup 100 MiB more
      in_use = "100MiB+10MiBx30",
      cgroup_current = "200MiB+10MiBx30",
   },
   -- room 924 MiB; at t=30 the course reaches it in (924 - 400) / 10 = 52.4 s < 300, but the
   -- heap, 100 + 30 * 10 = 400 MiB, never passed the floor of 462 MiB
   -- (and 500 / 1024 = 0.49: no cgroup-high)
   expect_none = true,
}

t.case {
   name = "cgroup-eta: above the floor but slow, 300 s or more away, is not enough",
   policy = "container.lua",
   series = {
      cgroup_max = "1GiB",
      -- t=0..30: 500 + 1 t MiB, the cgroup 100 MiB more
      in_use = "500MiB+1MiBx30",
      cgroup_current = "600MiB+1MiBx30",
   },
   -- above the floor (462 MiB) all along, but at 1 MiB/s the room (924 MiB) is
   -- 924 - (500 + t) = 424 - t >= 394 s away (t <= 30): never under 300 s;
   -- the cgroup at most 630 / 1024 = 0.615
   expect_none = true,
}
