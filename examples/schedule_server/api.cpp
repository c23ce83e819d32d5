#include "api.hpp"
#include "ascii.hpp"
#include "dashboard_assets.hpp"
#include "json_text.hpp"

#include "query.hpp"
#include "utf8.hpp"
#include "xml_charset.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <string>
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
    {"/api/import-schedule", "POST", "import-schedule", {"name", "channel", "overlap"}},
    {"/api/schedule-playlist", "POST", "schedule-playlist", {}},
    {"/api/schedules", "GET", "schedules", {}},
    {"/api/playlists", "GET", "playlists", {}},
    {"/api/export-schedule-xml", "GET", "export-schedule-xml", {"id", {}, {}}},
    {"/api/export-schedule-json", "GET", "export-schedule-json", {"id", {}, {}}},
    {"/api/export-all-schedules-xml", "GET", "export-all-schedules-xml", {}},
    {"/api/infowars-videos", "GET", "infowars-videos", {"offset", "limit", {}}},
}};

/// GET /api/memory-probe's query parameters: the worker's field each becomes and its range
/// (schedule_worker's memory_probe.hpp), checked here so a refusal names the parameter sent.
struct probe_parameter {
    std::string_view name;
    std::string_view field;
    std::int64_t minimum;
    std::int64_t maximum;
};

constexpr std::array<probe_parameter, 4> probe_parameters{{
    {"mb", "megabytes", 0, 2048},
    {"hold_ms", "hold_ms", 0, 60'000},
    {"step_mb", "step_megabytes", 1, 2048},
    {"step_ms", "step_ms", 0, 60'000},
}};

/// Server-sent events: /api/queue-stats once a second (the HTTP layer writes them).
constexpr std::string_view event_stream_path = "/api/queue-stats/stream";

/// The dashboard's files: its page at "/", and every file of the dashboard folder under
/// "/dashboard/" (the page links them so).
constexpr std::string_view dashboard_page = "index.html";
constexpr std::string_view dashboard_prefix = "/dashboard/";

/// The embedded file a path names, or nullptr.
const dashboard_asset* find_dashboard_asset(std::string_view path) {
    std::string_view name;
    if (path == "/") {
        name = dashboard_page;
    } else if (path.starts_with(dashboard_prefix)) {
        name = path.substr(dashboard_prefix.size());
    } else {
        return nullptr;
    }
    const auto assets = dashboard_assets();
    const auto found = std::find_if(assets.begin(), assets.end(),
                                    [name](const dashboard_asset& a) { return a.name == name; });
    return found == assets.end() ? nullptr : &*found;
}

/// Whether an If-None-Match value (`*`, or entity tags separated by commas, weak or strong)
/// names `etag`: the weak comparison RFC 9110 section 13.1.2 asks for.
bool etag_matches(std::string_view if_none_match, std::string_view etag) {
    while (!if_none_match.empty()) {
        const std::size_t comma = if_none_match.find(',');
        std::string_view tag = ascii::trim(if_none_match.substr(0, comma));
        if_none_match =
            comma == std::string_view::npos ? std::string_view{} : if_none_match.substr(comma + 1);
        if (tag.starts_with("W/")) {
            tag.remove_prefix(2);
        }
        if (tag == "*" || tag == etag) {
            return true;
        }
    }
    return false;
}

/// One file of the dashboard: always revalidated (`no-cache`, so a new server's page is seen
/// at once), 304 when the client has it already; the page may load nothing from elsewhere.
api_response dashboard_file(const dashboard_asset& asset, std::string_view if_none_match) {
    api_response response;
    response.headers.emplace_back("Cache-Control", "no-cache");
    response.headers.emplace_back("ETag", std::string(asset.etag));
    response.headers.emplace_back("Content-Security-Policy", "default-src 'self'");
    response.headers.emplace_back("X-Content-Type-Options", "nosniff");
    if (etag_matches(if_none_match, asset.etag)) {
        response.status = 304;
        response.content_type.clear();
        return response;
    }
    response.content_type = std::string(asset.content_type);
    response.body = std::string(asset.body);
    return response;
}

/// The `message` of a JSON error body, or "".
std::string error_message(std::string_view body) {
    json::error_code error;
    const json::value parsed = json::parse(body, error);
    if (error || !parsed.is_object()) {
        return {};
    }
    const auto* message = parsed.as_object().if_contains("message");
    return message != nullptr && message->is_string() ? std::string(message->get_string())
                                                      : std::string();
}

/// The methods the server serves anywhere (OPTIONS * and CONNECT are answered with them).
constexpr std::string_view served_methods = "GET, POST";

std::string error_body(std::string_view message) {
    return to_json_text(json::object{{"status", "error"}, {"message", message}});
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

using ascii::iequals;
using ascii::trim;

bool media_type_is(std::string_view content_type, std::string_view wanted) {
    return iequals(trim(content_type.substr(0, content_type.find(';'))), wanted);
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

/// 405 naming the method that came and the ones allowed (also in `Allow`).
api_response method_not_allowed(std::string_view method, std::string_view path,
                                std::string_view allowed) {
    api_response refused = api::error(405, "method " + std::string(method) + " not allowed on " +
                                               std::string(path) + "; use " + std::string(allowed));
    refused.headers.emplace_back("Allow", std::string(allowed));
    return refused;
}

/// The answer to a target that is not a path: OPTIONS * (what the server allows), or a
/// refusal; nothing for a path (origin- or absolute-form).
std::optional<api_response> answer_for_form(std::string_view method, target_form form) {
    if (method == "CONNECT") {
        api_response refused = api::error(405, "CONNECT is not served: this is no proxy");
        refused.headers.emplace_back("Allow", std::string(served_methods));
        return refused;
    }
    if (form == target_form::asterisk) {
        if (method != "OPTIONS") {
            return api::error(400, "the request target '*' is only for OPTIONS");
        }
        api_response allowed;
        allowed.status = 204;
        allowed.content_type.clear();
        allowed.headers.emplace_back("Allow", std::string(served_methods));
        return allowed;
    }
    if (form == target_form::authority) {
        return api::error(400, "a request target host:port is only for CONNECT");
    }
    return std::nullopt;
}

/// 400 for a Host field that RFC 9112 section 3.2 refuses; nothing when it is fine. An
/// absolute-form target names the host itself, so the field's value is not looked at then.
std::optional<api_response> refuse_host(const api_request& request, target_form form) {
    if (request.host_fields > 1) {
        return api::error(400, "more than one Host field");
    }
    if (request.host_fields == 0) {
        if (request.version >= 11) {
            return api::error(400, "an HTTP/1.1 request needs a Host field");
        }
        return std::nullopt;
    }
    if (form != target_form::absolute && !valid_host(request.host)) {
        return api::error(400, "the Host field is not host[:port]");
    }
    return std::nullopt;
}

/// The worker's memory_probe request from the query of GET /api/memory-probe, or the 400.
std::variant<std::string, api_response>
memory_probe_request(const std::map<std::string, std::string>& query) {
    json::object request;
    // (Not a structured binding: Clang before 16 cannot capture one in the lambda.)
    for (const auto& entry : query) {
        const std::string& key = entry.first;
        const std::string& value = entry.second;
        const auto* const parameter =
            std::find_if(probe_parameters.begin(), probe_parameters.end(),
                         [&key](const probe_parameter& p) { return p.name == key; });
        if (parameter == probe_parameters.end()) {
            return api::error(400, "unknown query parameter '" + key +
                                       "' for /api/memory-probe (mb, hold_ms, step_mb, step_ms)");
        }
        std::int64_t number = -1;
        const char* const end = value.data() + value.size();
        const auto [stop, error] = std::from_chars(value.data(), end, number);
        if (value.empty() || error != std::errc{} || stop != end || number < parameter->minimum ||
            number > parameter->maximum) {
            return api::input_error("must be a whole number " + std::to_string(parameter->minimum) +
                                        " to " + std::to_string(parameter->maximum),
                                    parameter->name);
        }
        request[parameter->field] = number;
    }
    if (!request.contains("megabytes")) {
        return api::input_error("required: the MiB to touch (0 to 2048)", "mb");
    }
    return to_json_text(request);
}

} // namespace

api::api(backend& queue, api_options options) : backend_(queue), options_(std::move(options)) {}

api_response api::error(unsigned status, std::string_view message) {
    api_response response;
    response.status = status;
    response.body = error_body(message) + '\n';
    return response;
}

api_response api::input_error(std::string_view message, std::string_view field, std::size_t line) {
    // The worker's shape: "field line N: message", with field and line also apart.
    std::string where(field);
    if (line != 0) {
        where += where.empty() ? "line " : " line ";
        where += std::to_string(line);
    }
    json::object body{
        {"status", "error"},
        {"code", "invalid_input"},
        {"message", where.empty() ? std::string(message) : where + ": " + std::string(message)}};
    if (!field.empty()) {
        body["field"] = field;
    }
    if (line != 0) {
        body["line"] = line;
    }
    api_response response;
    response.status = 400;
    response.body = to_json_text(body) + '\n';
    return response;
}

bool api::expects_continue(const api_request& request) noexcept {
    return request.version >= 11 && iequals(trim(request.expect), "100-continue");
}

bool api::authorized(const api_request& request) const {
    if (options_.auth_token.empty()) {
        return true;
    }
    constexpr std::string_view scheme = "Bearer ";
    const std::string_view given = request.authorization;
    if (given.size() < scheme.size() || !iequals(given.substr(0, scheme.size()), scheme)) {
        return false;
    }
    return same_secret(given.substr(scheme.size()), options_.auth_token);
}

namespace {

/// The bearer token of an Authorization field, or nothing.
std::string_view bearer_token(std::string_view authorization) {
    constexpr std::string_view scheme = "Bearer ";
    if (authorization.size() <= scheme.size() ||
        !iequals(authorization.substr(0, scheme.size()), scheme)) {
        return {};
    }
    return trim(authorization.substr(scheme.size()));
}

/// A client's key for a token: "token:" and 16 hex digits of its FNV-1a hash, so that stats and
/// logs never show the token itself.
std::string token_key(std::string_view token) {
    std::uint64_t hash = 14695981039346656037ULL;
    for (const char c : token) {
        hash = (hash ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
    }
    constexpr std::string_view digits = "0123456789abcdef";
    std::string key = "token:";
    for (int shift = 60; shift >= 0; shift -= 4) {
        key.push_back(digits[(hash >> shift) & 0xF]);
    }
    return key;
}

} // namespace

request_share api::share_for(const api_request& request, std::string_view operation) const {
    request_share share;
    const std::string_view token = bearer_token(request.authorization);
    const bool by_token = options_.key == fairness_key::token ||
                          (options_.key == fairness_key::automatic && !token.empty());
    if (by_token) {
        if (!token.empty()) {
            share.key = token_key(token);
        }
    } else if (options_.key != fairness_key::none && !request.peer.empty()) {
        std::string key = "peer:";
        key.append(request.peer);
        share.key = std::move(key);
    }
    std::size_t weight = 1;
    if (operation == "import-schedule") {
        weight = options_.import_weight;
    } else if (operation == "schedule-playlist") {
        weight = options_.schedule_weight;
    }
    share.weight = std::clamp<std::size_t>(weight, 1, backend_.options().pool_size);
    return share;
}

api::routed api::route(const api_request& request) {
    auto target = parse_request_target(request.target);
    if (auto* message = std::get_if<std::string>(&target)) {
        return error(400, *message);
    }
    auto& parsed = std::get<request_target>(target);
    if (auto refused = refuse_host(request, parsed.form)) {
        return std::move(*refused);
    }
    if (auto answer = answer_for_form(request.method, parsed.form)) {
        return std::move(*answer);
    }
    if (request.version >= 11 && !trim(request.expect).empty() && !expects_continue(request)) {
        return error(417, "the expectation '" + printable(trim(request.expect)) +
                              "' is not supported (only 100-continue)");
    }

    if (parsed.path == event_stream_path) {
        if (request.method != "GET" && request.method != "HEAD") {
            return method_not_allowed(request.method, parsed.path, "GET, HEAD");
        }
        if (shutting_down()) {
            api_response refused = error(503, "Server shutting down");
            refused.headers.emplace_back("Retry-After",
                                         std::to_string(options_.retry_after_seconds));
            return refused;
        }
        routed job;
        job.event_stream = true;
        job.get = true; // no body to take
        return job;
    }
    if (const dashboard_asset* asset = find_dashboard_asset(parsed.path)) {
        if (request.method != "GET" && request.method != "HEAD") {
            return method_not_allowed(request.method, parsed.path, "GET, HEAD");
        }
        return dashboard_file(*asset, request.if_none_match);
    }

    if (parsed.path == "/api/queue-stats" || parsed.path == "/api/system-info" ||
        parsed.path == "/metrics" || parsed.path == "/healthz" || parsed.path == "/readyz") {
        if (request.method != "GET") {
            return method_not_allowed(request.method, parsed.path, "GET");
        }
        if (parsed.path == "/api/queue-stats") {
            return queue_stats();
        }
        if (parsed.path == "/api/system-info") {
            return system_info();
        }
        if (parsed.path == "/metrics") {
            return metrics_text();
        }
        return parsed.path == "/healthz" ? healthz() : readyz();
    }

    if (parsed.path == "/api/memory-probe" && options_.memory_probe) {
        if (request.method != "GET") {
            return method_not_allowed(request.method, parsed.path, "GET");
        }
        auto probe = memory_probe_request(parsed.query);
        if (auto* refused = std::get_if<api_response>(&probe)) {
            return std::move(*refused);
        }
        routed job;
        job.share = share_for(request, "memory_probe");
        job.operation = "memory_probe";
        job.body = std::move(std::get<std::string>(probe));
        job.get = true;
        return job;
    }

    const auto* const route =
        std::find_if(queued_routes.begin(), queued_routes.end(),
                     [&](const queued_route& r) { return r.path == parsed.path; });
    if (route == queued_routes.end()) {
        return error(404, "no endpoint " + parsed.path);
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
            return error(400, "unknown query parameter '" + key + "' for " + parsed.path);
        }
    }

    // The worker's request: the query for GETs, the body for POSTs (an XMLTV body is wrapped
    // into the worker's {"xmltv": ...} form by take_body).
    routed job;
    job.operation = std::string(route->operation);
    job.share = share_for(request, route->operation);
    if (route->method == "GET") {
        json::object object;
        for (const auto& [key, value] : parsed.query) {
            object[key] = query_value(value);
        }
        job.body = to_json_text(object);
        job.get = true;
        return job;
    }
    if (media_type_is(request.content_type, "application/xml") ||
        media_type_is(request.content_type, "text/xml")) {
        if (route->operation != "import-schedule") {
            return error(415, "this endpoint takes JSON");
        }
        job.xml_body = true;
    } else if (request.content_type.empty() ||
               media_type_is(request.content_type, "application/json")) {
        if (!parsed.query.empty()) {
            return error(400, "query parameters are only used with an XMLTV body");
        }
    } else {
        return error(415,
                     "unsupported Content-Type '" + printable(request.content_type) +
                         "': send application/json" +
                         (route->operation == "import-schedule" ? std::string(" or application/xml")
                                                                : std::string()) +
                         " (with curl: -H 'Content-Type: application/json')");
    }
    job.query = std::move(parsed.query);
    return job;
}

std::optional<api_response> api::refuse_before_body(const routed& job) const {
    if (job.immediate || job.event_stream) {
        return std::nullopt;
    }
    if (shutting_down()) {
        api_response refused = error(503, "Server shutting down");
        refused.headers.emplace_back("Retry-After", std::to_string(options_.retry_after_seconds));
        return refused;
    }
    // Nothing would start it now and nowhere could it wait: the queue would refuse it.
    const btq::queue_stats stats = backend_.stats();
    if (stats.active >= stats.max_concurrency && stats.queued >= stats.capacity) {
        api_response refused = error(503, "queue full: try again later");
        refused.headers.emplace_back(
            "Retry-After", std::to_string(retry_after(stats, options_.retry_after_seconds)));
        return refused;
    }
    return std::nullopt;
}

void api::take_body(routed& job, std::string body, std::string_view content_type) const {
    if (job.immediate || job.get) {
        return; // a GET's body is not looked at
    }
    if (!job.xml_body) {
        if (const auto invalid = find_invalid_utf8(body)) {
            job.immediate = input_error("the request body is not valid UTF-8 (at byte " +
                                            std::to_string(*invalid) + ")",
                                        {}, line_at(body, *invalid));
            return;
        }
        job.body = std::move(body);
        return;
    }
    auto decoded = xml_to_utf8(body, content_type);
    if (auto* failure = std::get_if<xml_charset_error>(&decoded)) {
        job.immediate = input_error(failure->message, "xmltv", failure->line);
        return;
    }
    json::object object;
    object["xmltv"] = std::get<std::string>(decoded);
    for (const auto& [key, value] : job.query) {
        object[key] = value;
    }
    job.body = to_json_text(object);
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
    run_outcome outcome = co_await backend_.run(operation, body, stop, job.share);
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
    case run_outcome::kind::memory_limit: // 507 Insufficient Storage: "the task went above ..."
        response.status = 507;
        response.body = error_body(outcome.message);
        break;
    case run_outcome::kind::lease_lost:
    case run_outcome::kind::worker_failed:
        if (shutting_down()) { // stopped because the shutdown grace ran out
            response.status = 503;
            response.body = error_body("Server shutting down: the request was stopped after "
                                       "the shutdown grace");
            break;
        }
        if (outcome.result == run_outcome::kind::lease_lost) { // the limit could not be kept
            response.status = 503;
            response.body = error_body(outcome.message);
            response.headers.emplace_back("Retry-After",
                                          std::to_string(options_.retry_after_seconds));
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

void api::record(const api_response& response, std::string_view method,
                 std::string_view target) noexcept {
    const unsigned status_class = std::min(response.status / 100, 5U);
    metrics_.responses_by_class[status_class].fetch_add(1, std::memory_order_relaxed);
    if (response.wait_time.count() > 0 || response.run_time.count() > 0) {
        metrics_.wait.record(response.wait_time);
        metrics_.run.record(response.run_time);
    }
    if (response.status < 500) {
        return;
    }
    try {
        // What a client sent is kept short and printable, so /api/queue-stats stays small
        // and valid UTF-8 whatever came.
        constexpr std::size_t longest_method = 16;
        constexpr std::size_t longest_path = 256;
        recent_error entry;
        entry.time = std::chrono::system_clock::now();
        entry.method = printable(method.substr(0, longest_method));
        entry.path = printable(target.substr(0, std::min(target.find('?'), longest_path)));
        entry.status = response.status;
        entry.message = error_message(response.body);
        errors_.add(std::move(entry));
    } catch (const std::exception&) { // out of memory: this error is not kept
    }
}

} // namespace schedule_server
