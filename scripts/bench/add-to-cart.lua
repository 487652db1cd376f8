-- wrk: POST /api/carts/{id}/items on carts read from carts.txt (one "id cart-token" per line),
-- round robin per thread, so many streams take writes concurrently like real shoppers.
local carts = {}
for line in io.lines(os.getenv("CARTS_FILE")) do
  local id, token = line:match("^(%S+) (%S+)$")
  if id then carts[#carts + 1] = {id = id, token = token} end
end
local n = 0

function setup(thread)
  thread:set("offset", math.random(#carts))
end

request = function()
  n = n + 1
  local cart = carts[((offset + n) % #carts) + 1]
  return wrk.format("POST", "/api/carts/" .. cart.id .. "/items",
    {["Content-Type"] = "application/json", ["Cart-Token"] = cart.token},
    '{"sku":"CAB-USB","quantity":1}')
end

local failures = 0
response = function(status, headers, body)
  if status ~= 200 then failures = failures + 1 end
end

done = function(summary, latency, requests)
  io.write(string.format("non-200 responses: %d\n", failures))
  io.write(string.format("p50 %.2f ms, p99 %.2f ms, %.0f requests/s\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests / (summary.duration / 1e6)))
end
