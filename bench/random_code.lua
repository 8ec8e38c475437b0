-- GET /b000001 .. /bNNNNNN, the codes bench/service.sh seeds.
-- Arguments after `--`: the number of codes (default 20000), then optionally
-- `seq` and wrk's thread count to walk the codes in order instead of at
-- random: the warm-up does that so a short pass is sure to touch every code.
-- Each wrk thread has its own Lua state; setup() numbers them so that each
-- gets its own random seed and its own starting point.

local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

function init(args)
  count = tonumber(args[1]) or 20000
  sequential = args[2] == "seq"
  stride = tonumber(args[3]) or 1
  math.randomseed(os.time() * 1000 + id)
  next_code = id - 1
end

function request()
  local n
  if sequential then
    n = next_code % count + 1
    next_code = next_code + stride
  else
    n = math.random(count)
  end
  return wrk.format("GET", string.format("/b%06d", n))
end
