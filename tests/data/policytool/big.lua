local mmt = require 'mmt'
mmt.rule { name = 'big', metric = 'in_use', above = 40 * mmt.MiB,
  below = 20 * mmt.MiB, hold = 0.5, fire = function() end }
mmt.rule { name = 'growing', metric = 'rate', above = 20 * mmt.MiB,
  below = 1 * mmt.MiB, fire = function() end }
