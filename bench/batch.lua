-- wrk script: a batch of BENCH_BATCH events per request (200 unless set), as plugin 8.42+ flushes
-- its queue: every event of a request from one device (the queue is the device's), 5,000 devices.
local counter = 0
local base_ts = tonumber(os.getenv("BENCH_TS"))
local size = tonumber(os.getenv("BENCH_BATCH") or "200")
local actions = {"app_moved_to_foreground", "app_moved_to_background", "download_complete",
  "set", "app_launch_ready"}
local template = '{"action":"%s","app_id":"com.bench.app",'
  .. '"device_id":"0f673663-459a-44c0-a7f5-%08d","platform":"android","custom_id":"",'
  .. '"version_name":"1.2.3","version_build":"1.2.0","version_code":"12","version_os":"14",'
  .. '"plugin_version":"8.51.14","is_emulator":false,"is_prod":true,"defaultChannel":"",'
  .. '"old_version_name":"1.2.2","timestamp":%d}'

local requests = 0

request = function()
  local events = {}
  requests = requests + 1
  for i = 1, size do
    counter = counter + 1
    events[i] = string.format(template, actions[counter % 5 + 1], requests % 5000, base_ts - counter)
  end
  local body = "[" .. table.concat(events, ",") .. "]"
  return wrk.format("POST", "/stats", {["Content-Type"] = "application/json"}, body)
end
