-- GET a random code of those bench/stress.sh created; their file is in STRESS_CODES.
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

function init(args)
  codes = {}
  for line in io.lines(os.getenv("STRESS_CODES")) do
    codes[#codes + 1] = "/" .. line
  end
  math.randomseed(os.time() * 1000 + id)
end

function request()
  return wrk.format("GET", codes[math.random(#codes)])
end
