// The endpoints that never wait in the queue: /api/queue-stats and /api/system-info (JSON,
// written with Boost.JSON), /metrics (Prometheus text), /healthz and /readyz.
#include "api.hpp"
#include "database_url.hpp"
#include "json_text.hpp"

#include <boost/json.hpp>

#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace schedule_server {
namespace {

/// How many clients /api/queue-stats lists in busiestKeys.
constexpr std::size_t busiest_keys_shown = 5;

namespace json = boost::json;

/// A JSON answer: the object and a final newline.
api_response json_answer(const json::object& object) {
    api_response response;
    response.body = to_json_text(object) + '\n';
    return response;
}

/// A number as JSON, 0 when it is not finite (to_json_text writes 25.0 as `25` itself).
json::value number(double value) {
    return std::isfinite(value) ? value : 0.0;
}

/// Milliseconds with microsecond precision.
json::value milliseconds(std::chrono::nanoseconds value) {
    return number(std::round(static_cast<double>(value.count()) / 1e3) / 1e3);
}

json::object latency(const btq::latency_summary& summary) {
    return {{"count", summary.count},
            {"meanMs", milliseconds(summary.mean)},
            {"p50Ms", milliseconds(summary.p50)},
            {"p90Ms", milliseconds(summary.p90)},
            {"p99Ms", milliseconds(summary.p99)},
            {"maxMs", milliseconds(summary.max)}};
}

/// `now` in ISO 8601, UTC, to the millisecond: 2026-11-30T08:00:00.000Z.
std::string iso_timestamp(std::chrono::system_clock::time_point now) {
    const auto seconds = std::chrono::time_point_cast<std::chrono::seconds>(now);
    const auto millis =
        std::chrono::duration_cast<std::chrono::milliseconds>(now - seconds).count();
    const std::time_t t = std::chrono::system_clock::to_time_t(seconds);
    std::tm utc{};
    gmtime_r(&t, &utc);
    std::array<char, 64> buffer{};
    std::snprintf(buffer.data(), buffer.size(), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                  utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min,
                  utc.tm_sec, static_cast<int>(millis));
    return buffer.data();
}

std::string iso_timestamp_now() {
    return iso_timestamp(std::chrono::system_clock::now());
}

std::string_view mode_name(run_mode mode) {
    return mode == run_mode::pool ? "pool" : "spawn";
}

/// One metric without labels: its HELP and TYPE lines and its sample.
struct metric_sample {
    std::string_view name;
    std::string_view type; ///< gauge or counter
    std::string_view help;
    double value;
};

void append_metric(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help, double value) {
    out += "# HELP ";
    out += name;
    out += ' ';
    out += help;
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type;
    out += '\n';
    out += name;
    out += ' ';
    append_number(out, value);
    out += '\n';
}

/// The Redis gate's counters as the "redis" object of /api/queue-stats.
json::object redis_object(const redis_gate_stats& redis) {
    return {{"url", redis.url},
            {"globalConcurrency", redis.limit},
            {"permitsHeld", redis.permits_held},
            {"waiters", redis.waiters},
            {"grants", redis.grants},
            {"leaseRenewals", redis.lease_renewals},
            {"leasesLost", redis.leases_lost},
            {"redisErrors", redis.redis_errors},
            {"reconnects", redis.reconnects},
            {"healthy", redis.healthy},
            {"lastError", redis.last_error}};
}

/// The worker pool's counters as the "workers" object of /api/queue-stats (pool mode).
json::object workers_object(const btq::worker_pool_stats& workers) {
    return {{"ready", workers.ready},
            {"starts", workers.starts},
            {"startFailures", workers.start_failures},
            {"startFailuresInARow", workers.start_failures_in_a_row},
            {"crashes", workers.crashes},
            {"timeouts", workers.timeouts},
            {"protocolErrors", workers.protocol_errors},
            {"recycles", workers.recycles},
            {"memoryLimitKills", workers.memory_limit_kills}};
}

/// The recent errors, newest first, as the "recentErrors" array of /api/queue-stats.
json::array errors_array(const std::vector<recent_error>& errors) {
    json::array out;
    out.reserve(errors.size());
    for (const recent_error& error : errors) {
        out.push_back(json::object{{"time", iso_timestamp(error.time)},
                                   {"method", error.method},
                                   {"path", error.path},
                                   {"status", error.status},
                                   {"message", error.message}});
    }
    return out;
}

} // namespace

api_response api::queue_stats() const {
    api_response response;
    response.body = queue_stats_json() + '\n';
    return response;
}

std::string api::queue_stats_json() const {
    const btq::queue_stats stats = backend_.stats(busiest_keys_shown);
    const memory_stats memory = backend_.memory();
    // The seed's shape first, key for key, then what btq adds beside it.
    const json::object pool{
        {"totalProcessed", stats.total_processed},
        {"totalQueued", stats.total_queued},
        {"totalErrors", stats.total_errors},
        {"peakActive", stats.peak_active},
        {"peakQueueSize", stats.peak_queue_size},
        {"activeProcesses", stats.active},
        {"queuedTasks", stats.queued},
        {"maxConcurrency", stats.max_concurrency},
        {"utilizationPercent", number(std::round(stats.utilization_percent * 10) / 10)},
    };
    const json::object queue{
        {"mode", mode_name(backend_.options().mode)},
        {"capacity", stats.capacity},
        {"submitted", stats.submitted},
        {"rejected", stats.rejected},
        {"cleared", stats.cleared},
        {"expired", stats.expired},
        {"cancelled", stats.cancelled},
        {"timedOut", stats.timed_out},
        {"heldForMemory", memory.held_for_memory},
        {"heldForMemoryTotal", memory.memory_holds_total},
        {"stoppedAtMemoryLimit", memory.stopped_at_limit},
        {"peakTaskResidentBytes", memory.peak_resident_bytes},
        {"activeWeight", stats.active_weight},
        {"closed", stats.closed},
        {"waitTime", latency(stats.wait_time)},
        {"runTime", latency(stats.run_time)},
    };
    json::object answer{{"status", "success"},
                        {"processPool", pool},
                        {"timestamp", iso_timestamp_now()},
                        {"queue", queue}};
    if (const std::optional<redis_gate_stats> redis = backend_.redis()) {
        answer["redis"] = redis_object(*redis);
    }
    // Pool mode: the persistent workers; spawn mode has none (null).
    if (const std::optional<btq::worker_pool_stats> workers = backend_.workers()) {
        answer["workers"] = workers_object(*workers);
    } else {
        answer["workers"] = nullptr;
    }
    answer["recentErrors"] = errors_array(errors_.newest_first());
    // The clients with the most requests waiting and running (--fairness-key), busiest first.
    json::array keys;
    for (const btq::key_stats& key : stats.keys) {
        keys.push_back(json::object{{"key", key.key.to_string()},
                                    {"waiting", key.waiting},
                                    {"running", key.running},
                                    {"rejected", key.rejected}});
    }
    answer["busiestKeys"] = std::move(keys);
    return to_json_text(answer);
}

api_response api::system_info() const {
    json::object system;
    utsname names{};
    if (::uname(&names) == 0) {
        system["hostname"] = std::data(names.nodename);
        system["platform"] = std::data(names.sysname);
        system["release"] = std::data(names.release);
        system["arch"] = std::data(names.machine);
    }
    system["cpus"] = std::thread::hardware_concurrency();
    struct sysinfo info {};
    if (::sysinfo(&info) == 0) {
        system["totalMemory"] = std::uint64_t{info.totalram} * info.mem_unit;
        system["freeMemory"] = std::uint64_t{info.freeram} * info.mem_unit;
        system["uptimeSeconds"] = static_cast<std::uint64_t>(info.uptime);
        json::array loads;
        for (const unsigned long load : info.loads) {
            loads.push_back(number(std::round(static_cast<double>(load) /
                                              static_cast<double>(1U << SI_LOAD_SHIFT) * 100) /
                                   100));
        }
        system["loadAverage"] = std::move(loads);
    }
    json::object server{
        {"version", options_.version},
        {"pid", static_cast<std::uint64_t>(::getpid())},
        {"uptimeSeconds",
         static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                        std::chrono::steady_clock::now() - started_)
                                        .count())},
        {"mode", mode_name(backend_.options().mode)},
        {"poolSize", backend_.options().pool_size},
        {"queueCapacity", backend_.options().queue_capacity},
    };
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);) {
        if (line.rfind("VmRSS:", 0) == 0) {
            server["residentKiB"] = std::strtoull(line.c_str() + 6, nullptr, 10);
        }
    }
    server["openConnections"] = open_connections.load(std::memory_order_relaxed);
    // Where the schedules are; never the user or the password of a PostgreSQL URL.
    try {
        const schedule::database_location where =
            schedule::parse_database_url(store_url(backend_.options()));
        json::object store{{"kind", schedule::kind_name(where.store)}};
        if (where.store == schedule::database_location::kind::sqlite) {
            store["file"] = where.sqlite_file;
        } else {
            store["host"] = where.host;
            store["port"] = where.port.empty() ? std::string("5432") : where.port;
            store["database"] = where.database;
        }
        server["store"] = std::move(store);
    } catch (const schedule::database_url_error&) {
        server["store"] = nullptr; // checked at start: cannot happen
    }
    return json_answer({{"status", "success"},
                        {"system", std::move(system)},
                        {"server", std::move(server)},
                        {"timestamp", iso_timestamp_now()}});
}

api_response api::healthz() const {
    return json_answer({{"status", "success"}, {"healthy", true}});
}

api_response api::readyz() const {
    if (shutting_down()) {
        return error(503, "shutting down");
    }
    if (const std::optional<redis_gate_stats> redis = backend_.redis(); redis && !redis->healthy) {
        return error(503, "Redis unhealthy: " + (redis->last_error.empty() ? "not connected yet"
                                                                           : redis->last_error));
    }
    return json_answer({{"status", "success"}, {"ready", true}});
}

api_response api::metrics_text() const {
    const btq::queue_stats stats = backend_.stats();
    const memory_stats memory = backend_.memory();
    api_response response;
    response.content_type = "text/plain; version=0.0.4; charset=utf-8";
    std::string& out = response.body;
    out.reserve(4096);
    const std::array<metric_sample, 10> samples{{
        {"btq_queue_active", "gauge", "Requests running in schedule_worker now.",
         static_cast<double>(stats.active)},
        {"btq_queue_queued", "gauge", "Requests waiting for a slot now.",
         static_cast<double>(stats.queued)},
        {"btq_queue_capacity", "gauge", "Most requests that may wait.",
         static_cast<double>(stats.capacity)},
        {"btq_queue_max_concurrency", "gauge", "Most requests that may run at once.",
         static_cast<double>(stats.max_concurrency)},
        {"btq_queue_peak_active", "gauge", "Most requests ever running at once.",
         static_cast<double>(stats.peak_active)},
        {"btq_queue_peak_queued", "gauge", "Most requests ever waiting at once.",
         static_cast<double>(stats.peak_queue_size)},
        {"btq_queue_held_for_memory", "gauge",
         "Requests a slot was free for, held back now by the memory gate.",
         static_cast<double>(memory.held_for_memory)},
        {"btq_queue_memory_holds_total", "counter",
         "Times a request was held back by the memory gate.",
         static_cast<double>(memory.memory_holds_total)},
        {"btq_task_memory_limit_stops_total", "counter",
         "Worker runs stopped at the task memory limit (answered 507).",
         static_cast<double>(memory.stopped_at_limit)},
        {"btq_task_peak_resident_bytes", "gauge",
         "Largest peak resident size seen of a worker run (pool: of a worker).",
         static_cast<double>(memory.peak_resident_bytes)},
    }};
    for (const metric_sample& sample : samples) {
        append_metric(out, sample.name, sample.type, sample.help, sample.value);
    }

    out += "# HELP btq_tasks_total Queued requests by how they ended.\n"
           "# TYPE btq_tasks_total counter\n";
    const std::uint64_t failed = stats.total_errors - std::min(stats.total_errors, stats.timed_out);
    const std::array<std::pair<std::string_view, std::uint64_t>, 4> outcomes{{
        {"succeeded", stats.total_processed - std::min(stats.total_processed, stats.total_errors)},
        {"failed", failed},
        {"timed_out", stats.timed_out},
        {"not_run", stats.rejected + stats.cleared + stats.expired + stats.cancelled},
    }};
    for (const auto& [outcome, count] : outcomes) {
        out += "btq_tasks_total{outcome=\"";
        out += outcome;
        out += "\"} ";
        append_number(out, count);
        out += '\n';
    }
    out += "# HELP btq_rejections_total Queued requests that never started, by reason.\n"
           "# TYPE btq_rejections_total counter\n";
    const std::array<std::pair<std::string_view, std::uint64_t>, 5> reasons{{
        {"queue_full", stats.rejected - std::min(stats.rejected, stats.displaced)},
        {"displaced", stats.displaced},
        {"expired", stats.expired},
        {"cleared", stats.cleared},
        {"cancelled", stats.cancelled},
    }};
    for (const auto& [reason, count] : reasons) {
        out += "btq_rejections_total{reason=\"";
        out += reason;
        out += "\"} ";
        append_number(out, count);
        out += '\n';
    }
    metrics_.wait.write(out, "btq_queue_wait_seconds", "Time queued requests waited for a slot.");
    metrics_.run.write(out, "btq_task_run_seconds", "Time queued requests ran in schedule_worker.");
    out += "# HELP btq_http_responses_total Responses sent, by status class.\n"
           "# TYPE btq_http_responses_total counter\n";
    for (unsigned status_class = 1; status_class <= 5; ++status_class) {
        out += "btq_http_responses_total{code=\"" + std::to_string(status_class) + "xx\"} ";
        append_number(out,
                      metrics_.responses_by_class[status_class].load(std::memory_order_relaxed));
        out += '\n';
    }
    append_metric(out, "btq_http_open_connections", "gauge", "Client connections open now.",
                  static_cast<double>(open_connections.load(std::memory_order_relaxed)));
    append_metric(out, "btq_http_connections_refused_total", "counter",
                  "Connections answered 503 because --max-connections were open.",
                  static_cast<double>(refused_connections.load(std::memory_order_relaxed)));
    append_metric(out, "btq_server_ready", "gauge", "1 while the server accepts work.",
                  shutting_down() ? 0.0 : 1.0);
    if (const std::optional<btq::worker_pool_stats> workers = backend_.workers()) {
        // Pool mode: the persistent workers. A worker gone for a reason below is replaced; its
        // memory limit kills are btq_task_memory_limit_stops_total.
        const std::array<metric_sample, 7> worker_samples{{
            {"btq_workers_ready", "gauge", "Persistent workers idle or busy now (pool mode).",
             static_cast<double>(workers->ready)},
            {"btq_worker_starts_total", "counter",
             "Worker processes spawned, the first ones and every replacement.",
             static_cast<double>(workers->starts)},
            {"btq_worker_start_failures_total", "counter",
             "Workers that could not be spawned or ended before their first answer.",
             static_cast<double>(workers->start_failures)},
            {"btq_worker_crashes_total", "counter", "Workers that died while running a request.",
             static_cast<double>(workers->crashes)},
            {"btq_worker_timeouts_total", "counter",
             "Workers stopped because a request ran past --task-timeout-ms.",
             static_cast<double>(workers->timeouts)},
            {"btq_worker_protocol_errors_total", "counter",
             "Workers stopped for breaking the worker protocol.",
             static_cast<double>(workers->protocol_errors)},
            {"btq_worker_recycles_total", "counter",
             "Workers replaced after their most requests or memory (planned).",
             static_cast<double>(workers->recycles)},
        }};
        for (const metric_sample& sample : worker_samples) {
            append_metric(out, sample.name, sample.type, sample.help, sample.value);
        }
    }
    if (const std::optional<redis_gate_stats> redis = backend_.redis()) {
        const std::array<metric_sample, 9> redis_samples{{
            {"btq_redis_global_concurrency", "gauge", "Permits in the cluster-wide pool (N).",
             static_cast<double>(redis->limit)},
            {"btq_redis_permits_held", "gauge",
             "Cluster-wide permits held by requests running here.",
             static_cast<double>(redis->permits_held)},
            {"btq_redis_waiters", "gauge",
             "Requests a slot was free for, waiting for a cluster-wide permit now.",
             static_cast<double>(redis->waiters)},
            {"btq_redis_grants_total", "counter", "Permits granted to this server by Redis.",
             static_cast<double>(redis->grants)},
            {"btq_redis_lease_renewals_total", "counter", "Permit lease renewals acknowledged.",
             static_cast<double>(redis->lease_renewals)},
            {"btq_redis_leases_lost_total", "counter",
             "Running requests whose permit lease was lost (they were stopped).",
             static_cast<double>(redis->leases_lost)},
            {"btq_redis_errors_total", "counter",
             "Failed Redis connects, commands and error replies.",
             static_cast<double>(redis->redis_errors)},
            {"btq_redis_reconnects_total", "counter", "Redis connections made after the first.",
             static_cast<double>(redis->reconnects)},
            {"btq_redis_healthy", "gauge", "1 while Redis is connected and answering.",
             redis->healthy ? 1.0 : 0.0},
        }};
        for (const metric_sample& sample : redis_samples) {
            append_metric(out, sample.name, sample.type, sample.help, sample.value);
        }
    }
    return response;
}

} // namespace schedule_server
