#include "api.hpp"

#include <boost/json.hpp>

#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <variant>

namespace schedule_server {
namespace {

namespace json = boost::json;

/// The eight queued endpoints of the seed: method, schedule_worker operation, and the query
/// parameters each accepts.
struct queued_route {
    std::string_view path;
    std::string_view method;
    std::string_view operation;
    std::array<std::string_view, 3> parameters; ///< empty entries unused
};

constexpr std::array<queued_route, 8> queued_routes{{
    {"/api/import-schedule", "POST", "import-schedule", {"name", "channel", {}}},
    {"/api/schedule-playlist", "POST", "schedule-playlist", {}},
    {"/api/schedules", "GET", "schedules", {}},
    {"/api/playlists", "GET", "playlists", {}},
    {"/api/export-schedule-xml", "GET", "export-schedule-xml", {"id", {}, {}}},
    {"/api/export-schedule-json", "GET", "export-schedule-json", {"id", {}, {}}},
    {"/api/export-all-schedules-xml", "GET", "export-all-schedules-xml", {}},
    {"/api/infowars-videos", "GET", "infowars-videos", {"offset", "limit", {}}},
}};

/// The endpoints that never wait in the queue.
constexpr std::array<std::string_view, 5> direct_paths{"/api/queue-stats", "/api/system-info",
                                                       "/metrics", "/healthz", "/readyz"};

std::string escape_json(std::string_view text) {
    return json::serialize(json::string(text));
}

std::string error_body(std::string_view message) {
    return R"({"status":"error","message":)" + escape_json(message) + "}";
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/// Percent-decoding of one query component ('+' is a space).
std::optional<std::string> decode_component(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (c == '+') {
            out += ' ';
        } else if (c == '%') {
            if (i + 2 >= text.size()) {
                return std::nullopt;
            }
            const int high = hex_value(text[i + 1]);
            const int low = hex_value(text[i + 2]);
            if (high < 0 || low < 0) {
                return std::nullopt;
            }
            out += static_cast<char>(high * 16 + low);
            i += 2;
        } else {
            out += c;
        }
    }
    return out;
}

struct parsed_target {
    std::string_view path; ///< not decoded: the endpoints' paths are plain ASCII
    std::map<std::string, std::string> query;
};

/// Splits "path?query" and decodes the query; an error message when it is malformed.
std::variant<parsed_target, std::string> parse_target(std::string_view target) {
    parsed_target parsed;
    const std::size_t mark = target.find('?');
    parsed.path = target.substr(0, mark);
    if (mark == std::string_view::npos) {
        return parsed;
    }
    std::string_view rest = target.substr(mark + 1);
    while (!rest.empty()) {
        const std::size_t amp = rest.find('&');
        const std::string_view pair = rest.substr(0, amp);
        rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
        if (pair.empty()) {
            continue;
        }
        const std::size_t equals = pair.find('=');
        auto key = decode_component(pair.substr(0, equals));
        auto value = decode_component(equals == std::string_view::npos ? std::string_view{}
                                                                       : pair.substr(equals + 1));
        if (!key || !value) {
            return std::string("malformed percent-encoding in the query string");
        }
        if (!parsed.query.emplace(std::move(*key), std::move(*value)).second) {
            return "query parameter '" + std::string(pair.substr(0, equals)) + "' given twice";
        }
    }
    return parsed;
}

/// A query value as JSON: an integer when it is one (so `?id=3` reaches the worker as 3),
/// otherwise a string the worker will reject with a message naming the field.
json::value query_value(const std::string& text) {
    std::int64_t number = 0;
    const char* const end = text.data() + text.size();
    const auto [stop, error] = std::from_chars(text.data(), end, number);
    if (!text.empty() && error == std::errc{} && stop == end) {
        return number;
    }
    return json::string(text);
}

bool media_type_is(std::string_view content_type, std::string_view wanted) {
    const std::string_view bare = content_type.substr(0, content_type.find(';'));
    auto trimmed = bare;
    while (!trimmed.empty() && trimmed.back() == ' ') {
        trimmed.remove_suffix(1);
    }
    return trimmed.size() == wanted.size() &&
           std::equal(trimmed.begin(), trimmed.end(), wanted.begin(),
                      [](char a, char b) { return std::tolower(a) == std::tolower(b); });
}

/// Compares without an early exit, so the time taken does not reveal the token's prefix.
bool same_secret(std::string_view given, std::string_view expected) {
    unsigned difference = given.size() == expected.size() ? 0U : 1U;
    for (std::size_t i = 0; i < given.size(); ++i) {
        difference |= static_cast<unsigned>(
            given[i] ^ expected[i % std::max<std::size_t>(expected.size(), 1)]);
    }
    return difference == 0 && !expected.empty();
}

std::string iso_timestamp_now() {
    const auto now = std::chrono::system_clock::now();
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

/// `"key":` (keys are plain ASCII names: no escaping needed).
void append_key(std::string& out, std::string_view key) {
    out += '"';
    out += key;
    out += "\":";
}

void append_field(std::string& out, std::string_view key, std::uint64_t value) {
    append_key(out, key);
    append_number(out, value);
    out += ',';
}

void append_milliseconds(std::string& out, std::string_view key, std::chrono::nanoseconds value) {
    append_key(out, key);
    append_number(out, std::round(static_cast<double>(value.count()) / 1e3) / 1e3);
    out += ',';
}

void append_latency(std::string& out, std::string_view key, const btq::latency_summary& summary) {
    append_key(out, key);
    out += '{';
    append_field(out, "count", summary.count);
    append_milliseconds(out, "meanMs", summary.mean);
    append_milliseconds(out, "p50Ms", summary.p50);
    append_milliseconds(out, "p90Ms", summary.p90);
    append_milliseconds(out, "p99Ms", summary.p99);
    append_milliseconds(out, "maxMs", summary.max);
    out.back() = '}';
    out += ',';
}

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

std::string_view mode_name(run_mode mode) {
    return mode == run_mode::pool ? "pool" : "spawn";
}

/// Seconds a refused client should wait before retrying: the time for the queue ahead of it to
/// drain at the current median run time, at least 1 and at most 60.
unsigned retry_after(const btq::queue_stats& stats, unsigned minimum) {
    const double run_seconds = std::chrono::duration<double>(stats.run_time.p50).count();
    const double ahead = static_cast<double>(stats.queued + stats.active) /
                         static_cast<double>(std::max<std::size_t>(stats.max_concurrency, 1));
    const double estimate = std::ceil(ahead * run_seconds);
    return static_cast<unsigned>(std::clamp(estimate, static_cast<double>(minimum), 60.0));
}

unsigned status_for_error_code(std::string_view body) {
    json::error_code error;
    const json::value parsed = json::parse(body, error);
    if (error || !parsed.is_object()) {
        return 502;
    }
    const auto* code = parsed.as_object().if_contains("code");
    if (code == nullptr || !code->is_string()) {
        return 502;
    }
    const json::string& text = code->get_string();
    if (text == "invalid_input") {
        return 400;
    }
    if (text == "not_found") {
        return 404;
    }
    return 500;
}

} // namespace

api::api(backend& queue, api_options options) : backend_(queue), options_(std::move(options)) {}

api_response api::error(unsigned status, std::string_view message) {
    api_response response;
    response.status = status;
    response.body = error_body(message) + '\n';
    return response;
}

namespace {

/// 405 naming the method that came and the one the endpoint takes (also in `Allow`).
api_response method_not_allowed(std::string_view method, std::string_view path,
                                std::string_view allowed) {
    api_response refused = api::error(405, "method " + std::string(method) + " not allowed on " +
                                               std::string(path) + "; use " + std::string(allowed));
    refused.headers.emplace_back("Allow", std::string(allowed));
    return refused;
}

} // namespace

bool api::authorized(const api_request& request) const {
    if (options_.auth_token.empty()) {
        return true;
    }
    constexpr std::string_view scheme = "Bearer ";
    const std::string_view given = request.authorization;
    if (given.size() < scheme.size() ||
        !std::equal(scheme.begin(), scheme.end(), given.begin(),
                    [](char a, char b) { return std::tolower(a) == std::tolower(b); })) {
        return false;
    }
    return same_secret(given.substr(scheme.size()), options_.auth_token);
}

api::routed api::route(api_request& request) {
    auto target = parse_target(request.target);
    if (auto* message = std::get_if<std::string>(&target)) {
        return error(400, *message);
    }
    auto& parsed = std::get<parsed_target>(target);

    for (const std::string_view path : direct_paths) {
        if (parsed.path != path) {
            continue;
        }
        if (request.method != "GET") {
            return method_not_allowed(request.method, parsed.path, "GET");
        }
        if (path == "/api/queue-stats") {
            return queue_stats();
        }
        if (path == "/api/system-info") {
            return system_info();
        }
        if (path == "/metrics") {
            return metrics_text();
        }
        if (path == "/healthz") {
            api_response ok;
            ok.body = R"({"status":"success","healthy":true})";
            return ok;
        }
        if (shutting_down()) {
            return error(503, "shutting down");
        }
        api_response ready;
        ready.body = R"({"status":"success","ready":true})";
        return ready;
    }

    const auto* const route =
        std::find_if(queued_routes.begin(), queued_routes.end(),
                     [&](const queued_route& r) { return r.path == parsed.path; });
    if (route == queued_routes.end()) {
        return error(404, "no endpoint " + std::string(parsed.path));
    }
    if (request.method != route->method) {
        return method_not_allowed(request.method, parsed.path, route->method);
    }
    if (route->method == "POST" && !authorized(request)) {
        api_response refused = error(401, "missing or wrong bearer token");
        refused.headers.emplace_back("WWW-Authenticate", "Bearer");
        return refused;
    }
    for (const auto& [key, value] : parsed.query) {
        if (std::find(route->parameters.begin(), route->parameters.end(), key) ==
                route->parameters.end() ||
            key.empty()) {
            return error(400,
                         "unknown query parameter '" + key + "' for " + std::string(parsed.path));
        }
    }

    // The worker's request: the query for GETs, the body for POSTs (an XMLTV body is wrapped
    // into the worker's {"xmltv": ...} form).
    std::string body;
    if (route->method == "GET") {
        json::object object;
        for (const auto& [key, value] : parsed.query) {
            object[key] = query_value(value);
        }
        body = json::serialize(object);
    } else if (media_type_is(request.content_type, "application/xml") ||
               media_type_is(request.content_type, "text/xml")) {
        if (route->operation != "import-schedule") {
            return error(415, "this endpoint takes JSON");
        }
        json::object object;
        object["xmltv"] = json::string(request.body);
        for (const auto& [key, value] : parsed.query) {
            object[key] = json::string(value);
        }
        body = json::serialize(object);
    } else if (request.content_type.empty() ||
               media_type_is(request.content_type, "application/json")) {
        if (!parsed.query.empty()) {
            return error(400, "query parameters are only used with an XMLTV body");
        }
        body = std::move(request.body);
    } else {
        return error(415,
                     "unsupported Content-Type '" + std::string(request.content_type) +
                         "': send application/json" +
                         (route->operation == "import-schedule" ? std::string(" or application/xml")
                                                                : std::string()) +
                         " (with curl: -H 'Content-Type: application/json')");
    }
    routed job;
    job.operation = std::string(route->operation);
    job.body = std::move(body);
    return job;
}

boost::asio::awaitable<api_response> api::run(routed& job, const std::stop_token& stop) {
    const std::string& operation = job.operation;
    std::string& body = job.body;
    if (shutting_down()) {
        api_response refused = error(503, "Server shutting down");
        refused.headers.emplace_back("Retry-After", std::to_string(options_.retry_after_seconds));
        co_return refused;
    }
    const bool xml_answer = operation.find("-xml") != std::string::npos;
    run_outcome outcome = co_await backend_.run(operation, body, stop);
    api_response response;
    response.wait_time = outcome.wait_time;
    response.run_time = outcome.run_time;
    switch (outcome.result) {
    case run_outcome::kind::answered: {
        constexpr std::string_view success = R"({"status":"success")";
        if (outcome.body.compare(0, success.size(), success) != 0) {
            response.status = status_for_error_code(outcome.body);
            response.body = response.status == 502
                                ? error_body("schedule_worker answered with something other "
                                             "than its JSON")
                                : std::move(outcome.body);
        } else if (xml_answer) {
            json::error_code error;
            json::value parsed = json::parse(outcome.body, error);
            const json::value* xml =
                !error && parsed.is_object() ? parsed.as_object().if_contains("xml") : nullptr;
            if (xml == nullptr || !xml->is_string()) {
                response.status = 502;
                response.body = error_body("schedule_worker's answer has no XML document");
            } else {
                response.content_type = "application/xml; charset=utf-8";
                response.body = std::string(xml->get_string());
            }
        } else {
            response.body = std::move(outcome.body);
        }
        break;
    }
    case run_outcome::kind::not_run:
        response.status = 503;
        response.body = error_body(outcome.message);
        response.headers.emplace_back(
            "Retry-After",
            std::to_string(retry_after(backend_.stats(), options_.retry_after_seconds)));
        break;
    case run_outcome::kind::timed_out:
        response.status = 504;
        response.body = error_body(outcome.message);
        break;
    case run_outcome::kind::worker_failed:
        if (shutting_down()) { // stopped because the shutdown grace ran out
            response.status = 503;
            response.body = error_body("Server shutting down: the request was stopped after "
                                       "the shutdown grace");
            break;
        }
        response.status = 502;
        response.body = error_body(outcome.message);
        break;
    case run_outcome::kind::client_gone:
        response.status = 499; // nobody reads it; logged like nginx does
        response.body = error_body(outcome.message);
        break;
    }
    if (response.body.empty() || response.body.back() != '\n') {
        response.body += '\n';
    }
    co_return response;
}

api_response api::queue_stats() const {
    const btq::queue_stats stats = backend_.stats();
    api_response response;
    std::string& out = response.body;
    out.reserve(1024);
    // The seed's shape first, key for key, then what btq adds beside it.
    out += R"({"status":"success","processPool":{)";
    append_field(out, "totalProcessed", stats.total_processed);
    append_field(out, "totalQueued", stats.total_queued);
    append_field(out, "totalErrors", stats.total_errors);
    append_field(out, "peakActive", stats.peak_active);
    append_field(out, "peakQueueSize", stats.peak_queue_size);
    append_field(out, "activeProcesses", stats.active);
    append_field(out, "queuedTasks", stats.queued);
    append_field(out, "maxConcurrency", stats.max_concurrency);
    out += R"("utilizationPercent":)";
    append_number(out, std::round(stats.utilization_percent * 10) / 10);
    out += R"(},"timestamp":")";
    out += iso_timestamp_now();
    out += R"(","queue":{"mode":")";
    out += mode_name(backend_.options().mode);
    out += "\",";
    append_field(out, "capacity", stats.capacity);
    append_field(out, "submitted", stats.submitted);
    append_field(out, "rejected", stats.rejected);
    append_field(out, "cleared", stats.cleared);
    append_field(out, "expired", stats.expired);
    append_field(out, "cancelled", stats.cancelled);
    append_field(out, "timedOut", stats.timed_out);
    out += R"("closed":)";
    out += stats.closed ? "true," : "false,";
    append_latency(out, "waitTime", stats.wait_time);
    append_latency(out, "runTime", stats.run_time);
    out.back() = '}';
    out += "}\n";
    return response;
}

api_response api::system_info() const {
    api_response response;
    std::string& out = response.body;
    out += R"({"status":"success","system":{)";
    utsname names{};
    if (::uname(&names) == 0) {
        out += R"("hostname":)" + escape_json(std::string_view(std::data(names.nodename))) +
               R"(,"platform":)" + escape_json(std::string_view(std::data(names.sysname))) +
               R"(,"release":)" + escape_json(std::string_view(std::data(names.release))) +
               R"(,"arch":)" + escape_json(std::string_view(std::data(names.machine))) + ',';
    }
    append_field(out, "cpus", std::thread::hardware_concurrency());
    struct sysinfo info {};
    if (::sysinfo(&info) == 0) {
        append_field(out, "totalMemory", std::uint64_t{info.totalram} * info.mem_unit);
        append_field(out, "freeMemory", std::uint64_t{info.freeram} * info.mem_unit);
        append_field(out, "uptimeSeconds", static_cast<std::uint64_t>(info.uptime));
        out += R"("loadAverage":[)";
        for (const unsigned long load : info.loads) {
            append_number(out, std::round(static_cast<double>(load) /
                                          static_cast<double>(1U << SI_LOAD_SHIFT) * 100) /
                                   100);
            out += ',';
        }
        out.back() = ']';
        out += ',';
    }
    out.back() = '}';
    out += R"(,"server":{"version":)" + escape_json(options_.version) + ',';
    append_field(out, "pid", static_cast<std::uint64_t>(::getpid()));
    append_field(out, "uptimeSeconds",
                 static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                                std::chrono::steady_clock::now() - started_)
                                                .count()));
    out += R"("mode":")";
    out += mode_name(backend_.options().mode);
    out += "\",";
    append_field(out, "poolSize", backend_.options().pool_size);
    append_field(out, "queueCapacity", backend_.options().queue_capacity);
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);) {
        if (line.rfind("VmRSS:", 0) == 0) {
            append_field(out, "residentKiB", std::strtoull(line.c_str() + 6, nullptr, 10));
        }
    }
    append_field(out, "openConnections", open_connections.load(std::memory_order_relaxed));
    out.back() = '}';
    out += R"(,"timestamp":")" + iso_timestamp_now() + "\"}\n";
    return response;
}

void api::record(const api_response& response) noexcept {
    const unsigned status_class = std::min(response.status / 100, 5U);
    metrics_.responses_by_class[status_class].fetch_add(1, std::memory_order_relaxed);
    if (response.wait_time.count() > 0 || response.run_time.count() > 0) {
        metrics_.wait.record(response.wait_time);
        metrics_.run.record(response.run_time);
    }
}

api_response api::metrics_text() const {
    const btq::queue_stats stats = backend_.stats();
    api_response response;
    response.content_type = "text/plain; version=0.0.4; charset=utf-8";
    std::string& out = response.body;
    out.reserve(4096);
    append_metric(out, "btq_queue_active", "gauge", "Requests running in schedule_worker now.",
                  static_cast<double>(stats.active));
    append_metric(out, "btq_queue_queued", "gauge", "Requests waiting for a slot now.",
                  static_cast<double>(stats.queued));
    append_metric(out, "btq_queue_capacity", "gauge", "Most requests that may wait.",
                  static_cast<double>(stats.capacity));
    append_metric(out, "btq_queue_max_concurrency", "gauge", "Most requests that may run at once.",
                  static_cast<double>(stats.max_concurrency));
    append_metric(out, "btq_queue_peak_active", "gauge", "Most requests ever running at once.",
                  static_cast<double>(stats.peak_active));
    append_metric(out, "btq_queue_peak_queued", "gauge", "Most requests ever waiting at once.",
                  static_cast<double>(stats.peak_queue_size));

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
    append_metric(out, "btq_server_ready", "gauge", "1 while the server accepts work.",
                  shutting_down() ? 0.0 : 1.0);
    return response;
}

} // namespace schedule_server
