-- POST /api/v1/links with a URL no other request of the benchmark uses.
-- Argument after `--`: a tag unique to this wrk run (bench/service.sh passes
-- the run number and a random number), so runs never repeat a URL either.

local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

function init(args)
  prefix = "https://example.com/bench/" .. (args[1] or os.time()) .. "/" .. id .. "/"
  sent = 0
  headers = { ["Content-Type"] = "application/json" }
end

function request()
  sent = sent + 1
  local body = '{"url":"' .. prefix .. sent .. '"}'
  return wrk.format("POST", "/api/v1/links", headers, body)
end
