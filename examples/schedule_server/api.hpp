/// @file api.hpp
/// @brief The server's endpoints, independent of the HTTP library: a parsed request in, a
///        response out. The queued endpoints go through the backend; the others never wait.
#pragma once

#include "backend.hpp"
#include "metrics.hpp"

#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace schedule_server {

/// A request as the HTTP layer parsed it. The views point into the HTTP layer's own message,
/// which outlives the handling of the request.
struct api_request {
    std::string_view method;
    std::string_view target; ///< path and query, as received
    std::string body;
    std::string_view content_type;
    std::string_view authorization;
};

struct api_response {
    unsigned status = 200;
    std::string content_type = "application/json";
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;
    std::chrono::nanoseconds wait_time{0}; ///< in the queue (queued endpoints)
    std::chrono::nanoseconds run_time{0};  ///< in schedule_worker (queued endpoints)
};

struct api_options {
    std::string auth_token; ///< empty: POST needs no token
    unsigned retry_after_seconds = 1;
    std::string version = "0.1.0";
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
        std::string body;      ///< its request JSON
    };

    /// Routes one request and answers everything that does not wait in the queue (the direct
    /// endpoints, and every error found before the queue); never throws.
    [[nodiscard]] routed route(api_request& request);

    /// Runs a routed request through the queue and answers it; never throws. The caller
    /// requests `stop` if the client goes away while the request waits or runs (see
    /// backend::run; parameters are references for the reason given there).
    [[nodiscard]] boost::asio::awaitable<api_response> run(routed& job,
                                                           const std::stop_token& stop);

    /// An answer the HTTP layer produces itself (bad request line, body too large, ...).
    [[nodiscard]] static api_response error(unsigned status, std::string_view message);

    /// Shutdown has begun: /readyz fails and new queued requests get 503.
    void begin_shutdown() noexcept { shutting_down_.store(true, std::memory_order_release); }
    [[nodiscard]] bool shutting_down() const noexcept {
        return shutting_down_.load(std::memory_order_acquire);
    }

    /// Counts a finished response (for /metrics).
    void record(const api_response& response) noexcept;

    /// Connections open now (maintained by the HTTP layer, shown in /metrics).
    std::atomic<std::size_t> open_connections{0};

  private:
    [[nodiscard]] api_response queue_stats() const;
    [[nodiscard]] api_response system_info() const;
    [[nodiscard]] api_response metrics_text() const;
    [[nodiscard]] bool authorized(const api_request& request) const;

    backend& backend_;
    api_options options_;
    std::atomic<bool> shutting_down_{false};
    std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
    request_metrics metrics_;
};

} // namespace schedule_server
