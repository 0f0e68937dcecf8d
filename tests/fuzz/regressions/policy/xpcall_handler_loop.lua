-- An xpcall message handler that loops after an error: stopped by the time budget.
xpcall(error, function() while true do end end)
