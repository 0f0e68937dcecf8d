-- __tostring that calls tostring on itself, reached through string.format and print.
local mt = {}
mt.__tostring = function(o) return string.format('%s', o) end
print(setmetatable({}, mt))
