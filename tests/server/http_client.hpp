// A small HTTP/1.1 client for the server tests. Its interface is free of Boost.Beast so that only
// http_client.cpp pays Beast's compile time. Every call is bounded by a timeout.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace srv_test {

/// One HTTP response; header names are lower-cased.
struct http_response {
    unsigned status = 0;
    std::map<std::string, std::string> headers;
    std::string body;

    /// The header's value ("" when absent); `name` in any case.
    [[nodiscard]] std::string header(const std::string& name) const;
    [[nodiscard]] bool has_header(const std::string& name) const;
};

using header_list = std::vector<std::pair<std::string, std::string>>;

inline constexpr std::chrono::milliseconds default_timeout{20'000};

/// Opens a connection to 127.0.0.1:`port`, sends one request, reads its response, closes.
/// @throws std::runtime_error on a connection error or when `timeout` passes.
http_response request(unsigned short port, const std::string& method, const std::string& target,
                      const std::string& body = "", const header_list& headers = {},
                      std::chrono::milliseconds timeout = default_timeout);

/// A keep-alive connection: several requests, one after the other, on one TCP connection.
class http_connection {
  public:
    explicit http_connection(unsigned short port,
                             std::chrono::milliseconds timeout = default_timeout);
    ~http_connection();
    http_connection(const http_connection&) = delete;
    http_connection& operator=(const http_connection&) = delete;
    http_connection(http_connection&&) = delete;
    http_connection& operator=(http_connection&&) = delete;

    /// @throws std::runtime_error on an error (the server closed the connection, ...) or timeout.
    http_response send(const std::string& method, const std::string& target,
                       const std::string& body = "", const header_list& headers = {});

    /// True if the server closes the connection (end of stream) within `wait`; false if the
    /// connection is still open then (the connection is unusable afterwards either way).
    bool closed_by_server(std::chrono::milliseconds wait);

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

/// Raw socket: connects, writes `raw` (a whole HTTP request) and closes at once, reading nothing.
void send_and_close(unsigned short port, const std::string& raw);

/// Raw socket: a request written and never read, its connection open until hang_up() (or the
/// destructor) closes it, as a client that gives up does.
class unanswered_request {
  public:
    /// Connects and writes `raw` (a whole HTTP request). @throws std::runtime_error
    unanswered_request(unsigned short port, const std::string& raw);
    ~unanswered_request();
    unanswered_request(const unanswered_request&) = delete;
    unanswered_request& operator=(const unanswered_request&) = delete;
    unanswered_request(unanswered_request&&) = delete;
    unanswered_request& operator=(unanswered_request&&) = delete;

    /// Closes the connection without reading the answer.
    void hang_up();

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

/// What a raw exchange read: everything until the server closed, or until the timeout.
struct raw_answer {
    std::string received;
    bool closed = false; ///< the server closed the connection (end of stream) before the timeout
};

/// Raw socket: connects, writes `raw`, then reads until the server closes or `timeout` passes.
raw_answer send_raw(unsigned short port, const std::string& raw, std::chrono::milliseconds timeout);

/// Raw socket kept open for exchanges a whole-request client cannot make: a header sent before
/// its body (Expect: 100-continue), a request that stops half-way.
class raw_connection {
  public:
    /// Connects. @throws std::runtime_error
    explicit raw_connection(unsigned short port);
    ~raw_connection();
    raw_connection(const raw_connection&) = delete;
    raw_connection& operator=(const raw_connection&) = delete;
    raw_connection(raw_connection&&) = delete;
    raw_connection& operator=(raw_connection&&) = delete;

    /// Writes all of `data`. @throws std::runtime_error (the server closed the connection, ...)
    void send(std::string_view data);

    /// Reads one response (interim or final): its header, then `Content-Length` bytes of body.
    /// The whole response as received, or "" if it has not come within `timeout`.
    std::string read_response(std::chrono::milliseconds timeout);

    /// Reads until what was received holds `marker`: everything up to and including it (the
    /// rest is kept for the next read), or "" if it has not come within `timeout` or the server
    /// closed first. For a response without a length, read piece by piece (an event stream).
    std::string read_until(std::string_view marker, std::chrono::milliseconds timeout);

    /// True if the server closes the connection within `timeout`; whatever it sent before is
    /// discarded (and counted in `discarded`).
    bool closed_within(std::chrono::milliseconds timeout, std::size_t* discarded = nullptr);

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

} // namespace srv_test
