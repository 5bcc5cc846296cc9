ids = {}
for line in io.lines("/tmp/ids.txt") do ids[#ids + 1] = line end
request = function()
  return wrk.format("GET", "/customers/" .. ids[math.random(#ids)])
end
