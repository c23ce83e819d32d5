/// @file api.hpp
/// @brief The server's endpoints, independent of the HTTP library: a parsed request in, a
///        response out. The queued endpoints go through the backend; the others never wait.
#pragma once

#include "backend.hpp"
#include "metrics.hpp"
#include "recent_errors.hpp"

#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace schedule_server {

/// A request as the HTTP layer parsed it: its header first (route() needs nothing more), its
/// body later (take_body()). The views point into the HTTP layer's own message, which outlives
/// the handling of the request.
struct api_request {
    std::string_view method;
    std::string_view target; ///< as received: origin-form, absolute-form, ...
    unsigned version = 11;   ///< 10 for HTTP/1.0, 11 for HTTP/1.1
    std::size_t host_fields = 0;
    std::string_view host; ///< the Host field's value (when there is one)
    std::string_view expect;
    std::string_view content_type;
    std::string_view authorization;
    std::string_view if_none_match; ///< entity tags the client has (the dashboard's files)
    std::string_view peer;          ///< the client's address, without its port
};

struct api_response {
    unsigned status = 200;
    std::string content_type = "application/json";
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;
    std::chrono::nanoseconds wait_time{0}; ///< in the queue (queued endpoints)
    std::chrono::nanoseconds run_time{0};  ///< in schedule_worker (queued endpoints)
};

/// What a queued request's key (its client, for btq's per-key fairness) is made of.
enum class fairness_key {
    automatic, ///< the bearer token when the request has one, else the peer address
    token,     ///< the bearer token; requests without one share no key
    peer,      ///< the peer address
    none,      ///< no key: one FIFO for everybody
};

struct api_options {
    fairness_key key = fairness_key::automatic;
    /// The weights of the heavy operations (submit_options::weight; listings weigh 1), at most
    /// the pool size (a larger one counts as the whole pool).
    std::size_t import_weight = 3;
    std::size_t schedule_weight = 2;
    std::string auth_token; ///< empty: POST needs no token
    unsigned retry_after_seconds = 1;
    std::string version = "0.1.0";
    /// Serve GET /api/memory-probe (--enable-memory-probe): a request that makes its worker
    /// touch the memory it names, for tests and benchmarks of the memory limit. Off: 404.
    bool memory_probe = false;
};

/// @brief Routes requests; thread-safe.
class api {
  public:
    api(backend& queue, api_options options);

    /// A request after routing: answered at once (`immediate`), or to be run through the queue.
    struct routed {
        routed() = default;
        routed(api_response answer) // NOLINT(google-explicit-constructor): "return error(...)"
            : immediate(std::move(answer)) {}
        std::optional<api_response> immediate;
        std::string operation; ///< schedule_worker's operation
        std::string body;      ///< its request JSON (after take_body)
        std::map<std::string, std::string> query;
        bool xml_body = false; ///< the body is XMLTV, to be wrapped into {"xmltv": ...}
        bool get = false;      ///< the worker's request is the query
        /// GET /api/queue-stats/stream: the HTTP layer answers with server-sent events (or its
        /// refusal when too many streams are open); the request never enters the queue.
        bool event_stream = false;
        request_share share; ///< whose it is, and its weight
    };

    /// Routes one request by its header and answers everything that needs no body: the direct
    /// endpoints, and every refusal (400 for a bad target, Host or query; 401, 404, 405, 415,
    /// 417, 503 once shutdown has begun); never throws.
    [[nodiscard]] routed route(const api_request& request);

    /// For a request that expects `100 Continue`: the refusal it would get later anyway, given
    /// now so its body need not be sent (503 while the queue is full); nothing if it may go on.
    [[nodiscard]] std::optional<api_response> refuse_before_body(const routed& job) const;

    /// Builds the worker's request from the body of a routed request, or answers it (400 for a
    /// body that is not UTF-8, or an XMLTV body in an encoding that cannot be read); never
    /// throws.
    void take_body(routed& job, std::string body, std::string_view content_type) const;

    /// Runs a routed request through the queue and answers it; never throws. The caller
    /// requests `stop` if the client goes away while the request waits or runs (see
    /// backend::run; parameters are references for the reason given there).
    [[nodiscard]] boost::asio::awaitable<api_response> run(routed& job,
                                                           const std::stop_token& stop);

    /// Whether the request names the expectation `100-continue` (HTTP/1.1 only).
    [[nodiscard]] static bool expects_continue(const api_request& request) noexcept;

    /// An answer the HTTP layer produces itself (bad request line, body too large, ...).
    [[nodiscard]] static api_response error(unsigned status, std::string_view message);

    /// 400 for bad input found by the server, in the worker's shape: `code` invalid_input and,
    /// when known, the `field` and `line` at fault.
    [[nodiscard]] static api_response
    input_error(std::string_view message, std::string_view field = {}, std::size_t line = 0);

    /// Shutdown has begun: /readyz fails and new queued requests get 503.
    void begin_shutdown() noexcept { shutting_down_.store(true, std::memory_order_release); }
    [[nodiscard]] bool shutting_down() const noexcept {
        return shutting_down_.load(std::memory_order_acquire);
    }

    /// Counts a finished response (for /metrics); one with a status of 500 or more is kept
    /// among the recent errors of /api/queue-stats (with `method`, and `target` without its
    /// query). Call it before the body is moved away: the error's message is read from it.
    void record(const api_response& response, std::string_view method = "-",
                std::string_view target = "-") noexcept;

    /// The JSON of GET /api/queue-stats on one line, without its final newline: each event of
    /// the event stream carries it.
    [[nodiscard]] std::string queue_stats_json() const;

    /// Connections open now (maintained by the HTTP layer, shown in /metrics).
    std::atomic<std::size_t> open_connections{0};
    /// Connections answered 503 because the most connections were open (the HTTP layer's
    /// max_connections), in total (shown in /metrics).
    std::atomic<std::uint64_t> refused_connections{0};

  private:
    [[nodiscard]] api_response queue_stats() const;
    [[nodiscard]] api_response system_info() const;
    [[nodiscard]] api_response metrics_text() const;
    [[nodiscard]] api_response healthz() const;
    [[nodiscard]] api_response readyz() const;
    [[nodiscard]] bool authorized(const api_request& request) const;
    [[nodiscard]] request_share share_for(const api_request& request,
                                          std::string_view operation) const;

    backend& backend_;
    api_options options_;
    std::atomic<bool> shutting_down_{false};
    std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
    request_metrics metrics_;
    recent_errors errors_;
};

} // namespace schedule_server
