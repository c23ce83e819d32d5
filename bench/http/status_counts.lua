-- wrk script for bench/http/run_http_bench.sh: counts responses per HTTP status code and writes
-- the run's numbers as one JSON object to the file named by $WRK_JSON_OUT.
--
-- Each wrk thread has its own Lua state, so each counts into its own global `statuses`
-- table; done() collects them through the thread objects kept by setup().

local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    statuses = {}
    -- The body of the first response per status code other than 200, to show in the report.
    samples = {}
end

function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
    if status ~= 200 and samples[status] == nil then
        samples[status] = string.sub(body or "", 1, 300)
    end
end

local function json_string(text)
    text = string.gsub(text, '[%c"\\]', function(c)
        if c == '"' then return '\\"' end
        if c == '\\' then return '\\\\' end
        return string.format("\\u%04x", string.byte(c))
    end)
    return '"' .. text .. '"'
end

function done(summary, latency, requests)
    local counts = {}
    local bodies = {}
    for _, thread in ipairs(threads) do
        local counted = thread:get("statuses") or {}
        for status, count in pairs(counted) do
            counts[status] = (counts[status] or 0) + count
        end
        local sampled = thread:get("samples") or {}
        for status, body in pairs(sampled) do
            if bodies[status] == nil then
                bodies[status] = body
            end
        end
    end

    local parts = {}
    for status, count in pairs(counts) do
        table.insert(parts, string.format('"%d":%d', status, count))
    end
    local body_parts = {}
    for status, body in pairs(bodies) do
        table.insert(body_parts, string.format('"%d":%s', status, json_string(body)))
    end

    local seconds = summary.duration / 1e6
    local percentiles = {}
    for _, p in ipairs({50, 75, 90, 99, 99.9}) do
        table.insert(percentiles, string.format('"%s":%.1f', tostring(p), latency:percentile(p)))
    end

    local out = string.format(
        '{"requests":%d,"duration_s":%.3f,"requests_per_s":%.2f,"bytes":%d,' ..
        '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
        '"latency_us":{"mean":%.1f,"stdev":%.1f,"min":%d,"max":%d,"percentiles":{%s}},' ..
        '"statuses":{%s},"sample_bodies":{%s}}',
        summary.requests, seconds, summary.requests / seconds, summary.bytes,
        summary.errors.connect, summary.errors.read, summary.errors.write,
        summary.errors.status, summary.errors.timeout,
        latency.mean, latency.stdev, latency.min, latency.max, table.concat(percentiles, ","),
        table.concat(parts, ","), table.concat(body_parts, ","))

    local path = os.getenv("WRK_JSON_OUT")
    if path and path ~= "" then
        local file = assert(io.open(path, "w"))
        file:write(out, "\n")
        file:close()
    else
        io.write(out, "\n")
    end
end
