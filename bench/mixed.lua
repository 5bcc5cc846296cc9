-- A read mix for the API under load: mostly one customer, some pages and aggregates.
ids = {}
for line in io.lines("/tmp/ids.txt") do ids[#ids + 1] = line end
request = function()
  local r = math.random(100)
  if r <= 80 then
    return wrk.format("GET", "/customers/" .. ids[math.random(#ids)])
  elseif r <= 88 then
    return wrk.format("GET", "/customers/" .. ids[math.random(#ids)] .. "/orders?limit=10")
  elseif r <= 94 then
    return wrk.format("GET", "/customers?limit=20&sort=-total_spent")
  elseif r <= 97 then
    return wrk.format("GET", "/orders?limit=20")
  else
    return wrk.format("GET", "/analytics/churn")
  end
end
