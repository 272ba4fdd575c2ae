-- wrk script: one plugin event per request, each with its own device timestamp, so none is a
-- resend that the server would skip.
local counter = 0
local base_ts = tonumber(os.getenv("BENCH_TS"))
local template = '{"action":"app_moved_to_foreground","app_id":"com.bench.app",'
  .. '"device_id":"0f673663-459a-44c0-a7f5-%08d","platform":"ios","custom_id":"",'
  .. '"version_name":"1.2.3","version_build":"1.2.0","version_code":"12","version_os":"17.4",'
  .. '"plugin_version":"8.51.14","is_emulator":false,"is_prod":true,"defaultChannel":"",'
  .. '"old_version_name":"","install_source":"app_store","timestamp":%d}'

request = function()
  counter = counter + 1
  local body = string.format(template, counter % 5000, base_ts - counter)
  return wrk.format("POST", "/stats", {["Content-Type"] = "application/json"}, body)
end
