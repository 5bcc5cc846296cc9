-- GET one path per request with a random id: IDS names a file of ids (one a line),
-- PATH a template where %s stands for the id, e.g. "/customers/%s?as_of=2026-06-30".
local ids = {}
for line in io.lines(os.getenv("IDS")) do ids[#ids + 1] = line end
local template = os.getenv("PATH_TEMPLATE")
request = function()
  return wrk.format("GET", string.format(template, ids[math.random(#ids)]))
end
