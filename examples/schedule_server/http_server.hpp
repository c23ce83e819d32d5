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
    std::chrono::seconds idle_timeout{60}; ///< a keep-alive connection with no request
    std::chrono::seconds io_timeout{30};   ///< reading one request, writing one response
    bool access_log = true;                ///< one line per request on stderr
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
    /// Shutdown: stop accepting; connections finish their current request and then close.
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
