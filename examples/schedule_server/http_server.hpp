/// @file http_server.hpp
/// @brief The HTTP/1.1 side of the example server: Boost.Beast with C++20 coroutines.
#pragma once

#include "api.hpp"
#include "io_pool.hpp"

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

namespace schedule_server {

struct http_options {
    std::string address = "127.0.0.1";
    unsigned short port = 5000;
    std::size_t body_limit = std::size_t{8} << 20;
    /// A connection with no byte of a (next) request for this long is closed, without a word.
    std::chrono::milliseconds idle_timeout{60'000};
    /// From a request's first byte to the end of its header; then 408 and the connection closed.
    std::chrono::milliseconds header_timeout{30'000};
    /// Reading a request's body; then 408 and the connection closed.
    std::chrono::milliseconds body_timeout{60'000};
    std::chrono::milliseconds io_timeout{30'000}; ///< writing one response
    bool access_log = true;                       ///< one line per request on stderr
    /// Most connections served at once (0: no limit). A connection beyond it is answered 503
    /// with `Retry-After` and closed (at most `max_refusing` such answers at once; the accept
    /// loop waits while that many are under way).
    std::size_t max_connections = 0;
    std::size_t max_refusing = 32;
    /// GET /api/queue-stats/stream: how long one stream lasts before the server ends it (the
    /// browser's EventSource then reconnects), and the most streams open at once (beyond: 503
    /// with `Retry-After: 5`).
    std::chrono::seconds event_stream_duration{300};
    std::size_t max_event_streams = 16;
};

/// @brief Accepts connections and serves each with a coroutine, on one of the pool's
///        io_contexts (round robin). Waiting requests cost no thread.
class http_server {
  public:
    http_server(io_pool& contexts, api& endpoints, http_options options);
    ~http_server();
    http_server(const http_server&) = delete;
    http_server& operator=(const http_server&) = delete;
    http_server(http_server&&) = delete;
    http_server& operator=(http_server&&) = delete;

    /// Binds, listens and starts accepting. @throws boost::system::system_error if it cannot.
    void start();
    /// The port actually bound (useful with port 0).
    [[nodiscard]] unsigned short port() const;
    /// Shutdown: stop accepting; connections finish their current request and then close; event
    /// streams end at once.
    void stop_accepting();
    /// Shutdown, later: close connections that are between requests.
    void close_idle_connections();
    /// Connections open now.
    [[nodiscard]] std::size_t connections() const;

  private:
    struct state;
    std::shared_ptr<state> state_;
};

} // namespace schedule_server
