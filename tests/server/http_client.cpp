// The only translation unit of the server tests that includes Boost.Beast. Requests run as
// asynchronous operations on a private io_context with a deadline (beast::tcp_stream's
// expires_after), so no call can hang; the raw-socket helpers use POSIX sockets directly.
#include "http_client.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string_view>

namespace srv_test {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

std::string lower(std::string_view text) {
    std::string out(text);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

http::request<http::string_body> make_request(const std::string& method, const std::string& target,
                                              const std::string& body, const header_list& headers) {
    http::request<http::string_body> message;
    message.method_string(method);
    message.target(target);
    message.version(11);
    message.set(http::field::host, "127.0.0.1");
    message.body() = body;
    message.prepare_payload();
    for (const auto& [name, value] : headers) {
        message.set(name, value);
    }
    return message;
}

} // namespace

std::string http_response::header(const std::string& name) const {
    const auto found = headers.find(lower(name));
    return found == headers.end() ? std::string() : found->second;
}

bool http_response::has_header(const std::string& name) const {
    return headers.count(lower(name)) != 0;
}

struct http_connection::impl {
    asio::io_context io;
    beast::tcp_stream stream{io};
    beast::flat_buffer buffer;
    std::chrono::milliseconds timeout;

    impl(unsigned short port, std::chrono::milliseconds timeout_in) : timeout(timeout_in) {
        beast::error_code result = asio::error::would_block;
        stream.expires_after(timeout);
        stream.async_connect(tcp::endpoint(asio::ip::address_v4::loopback(), port),
                             [&result](const beast::error_code& error) { result = error; });
        io.run();
        if (result) {
            throw std::runtime_error("connect to port " + std::to_string(port) + ": " +
                                     result.message());
        }
    }

    http_response exchange(const std::string& method, const std::string& target,
                           const std::string& body, const header_list& headers) {
        auto message = make_request(method, target, body, headers);
        http::response_parser<http::string_body> parser;
        parser.body_limit(std::uint64_t{64} << 20);
        beast::error_code write_result;
        beast::error_code read_result = asio::error::would_block;
        stream.expires_after(timeout);
        // The response is read even when the write failed: the server may answer (413, ...)
        // and close before it has read the whole request.
        http::async_write(stream, message, [&](const beast::error_code& error, std::size_t) {
            write_result = error;
            if (error == beast::error::timeout) {
                read_result = error;
                return;
            }
            http::async_read(stream, buffer, parser,
                             [&](const beast::error_code& read_error, std::size_t) {
                                 read_result = read_error;
                             });
        });
        io.restart();
        io.run();
        if (read_result) {
            throw std::runtime_error(
                method + " " + target + ": " + read_result.message() +
                (write_result ? " (write: " + write_result.message() + ")" : std::string()));
        }
        const auto& answer = parser.get();
        http_response response;
        response.status = answer.result_int();
        for (const auto& field : answer) {
            response.headers[lower(field.name_string())] = std::string(field.value());
        }
        response.body = answer.body();
        return response;
    }

    bool closed_by_server(std::chrono::milliseconds wait) {
        if (buffer.size() > 0) {
            return false; // unread bytes: the connection is not at its end
        }
        char byte = 0;
        beast::error_code result = asio::error::would_block;
        stream.expires_after(wait);
        stream.async_read_some(asio::buffer(&byte, 1), [&result](const beast::error_code& error,
                                                                 std::size_t) { result = error; });
        io.restart();
        io.run();
        return result == asio::error::eof || result == asio::error::connection_reset;
    }
};

http_connection::http_connection(unsigned short port, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<impl>(port, timeout)) {}

http_connection::~http_connection() = default;

http_response http_connection::send(const std::string& method, const std::string& target,
                                    const std::string& body, const header_list& headers) {
    return impl_->exchange(method, target, body, headers);
}

bool http_connection::closed_by_server(std::chrono::milliseconds wait) {
    return impl_->closed_by_server(wait);
}

http_response request(unsigned short port, const std::string& method, const std::string& target,
                      const std::string& body, const header_list& headers,
                      std::chrono::milliseconds timeout) {
    http_connection connection(port, timeout);
    return connection.send(method, target, body, headers);
}

namespace {

/// A connected TCP socket to 127.0.0.1:port, closed on destruction.
class raw_socket {
  public:
    explicit raw_socket(unsigned short port) {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd_ < 0) {
            throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
        }
        timeval limit{5, 0};
        ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_port = htons(port);
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
            const int error = errno;
            ::close(fd_);
            throw std::runtime_error(std::string("connect: ") + std::strerror(error));
        }
    }
    raw_socket(const raw_socket&) = delete;
    raw_socket& operator=(const raw_socket&) = delete;
    ~raw_socket() { close(); }

    void send_all(std::string_view data) {
        while (!data.empty()) {
            const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR) {
                    continue;
                }
                throw std::runtime_error(std::string("send: ") + std::strerror(errno));
            }
            data.remove_prefix(static_cast<std::size_t>(n));
        }
    }
    void close() {
        if (fd_ >= 0) {
            ::close(fd_);
            fd_ = -1;
        }
    }
    [[nodiscard]] int fd() const noexcept { return fd_; }

  private:
    int fd_ = -1;
};

} // namespace

struct unanswered_request::impl {
    explicit impl(unsigned short port) : socket(port) {}
    raw_socket socket;
};

unanswered_request::unanswered_request(unsigned short port, const std::string& raw)
    : impl_(std::make_unique<impl>(port)) {
    impl_->socket.send_all(raw);
}

unanswered_request::~unanswered_request() = default;

void unanswered_request::hang_up() {
    impl_->socket.close();
}

void send_and_close(unsigned short port, const std::string& raw) {
    unanswered_request(port, raw).hang_up();
}

raw_answer send_raw(unsigned short port, const std::string& raw,
                    std::chrono::milliseconds timeout) {
    raw_socket socket(port);
    socket.send_all(raw);
    raw_answer answer;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    char buffer[4096];
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            return answer;
        }
        pollfd waiting{socket.fd(), POLLIN, 0};
        const int ready = ::poll(&waiting, 1, static_cast<int>(left.count()));
        if (ready < 0 && errno == EINTR) {
            continue;
        }
        if (ready <= 0) {
            return answer;
        }
        const ssize_t n = ::recv(socket.fd(), buffer, sizeof buffer, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            answer.closed = true;
            return answer;
        }
        answer.received.append(buffer, static_cast<std::size_t>(n));
    }
}

namespace {

/// Waits at most until `deadline` for `fd` to be readable, then reads what is there into `out`.
/// 1: bytes read; 0: the peer closed; -1: the deadline passed (or an error).
int read_some(int fd, std::string& out, std::chrono::steady_clock::time_point deadline) {
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            return -1;
        }
        pollfd waiting{fd, POLLIN, 0};
        const int ready = ::poll(&waiting, 1, static_cast<int>(left.count()));
        if (ready < 0 && errno == EINTR) {
            continue;
        }
        if (ready <= 0) {
            return -1;
        }
        char buffer[65536];
        const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == ECONNRESET) {
            return 0;
        }
        if (n <= 0) {
            return n == 0 ? 0 : -1;
        }
        out.append(buffer, static_cast<std::size_t>(n));
        return 1;
    }
}

/// The Content-Length of a response header ("" or absent: 0).
std::size_t content_length(std::string_view header) {
    const std::string lowered = lower(header);
    constexpr std::string_view name = "\r\ncontent-length:";
    const std::size_t at = lowered.find(name);
    if (at == std::string::npos) {
        return 0;
    }
    std::size_t position = at + name.size();
    while (position < lowered.size() && lowered[position] == ' ') {
        ++position;
    }
    std::size_t length = 0;
    while (position < lowered.size() && lowered[position] >= '0' && lowered[position] <= '9') {
        length = length * 10 + static_cast<std::size_t>(lowered[position] - '0');
        ++position;
    }
    return length;
}

} // namespace

struct raw_connection::impl {
    explicit impl(unsigned short port) : socket(port) {}
    raw_socket socket;
    std::string pending; ///< received, not yet returned
};

raw_connection::raw_connection(unsigned short port) : impl_(std::make_unique<impl>(port)) {}

raw_connection::~raw_connection() = default;

void raw_connection::send(std::string_view data) {
    impl_->socket.send_all(data);
}

std::string raw_connection::read_response(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string& pending = impl_->pending;
    for (;;) {
        const std::size_t header_end = pending.find("\r\n\r\n");
        if (header_end != std::string::npos) {
            const std::size_t size =
                header_end + 4 + content_length(std::string_view(pending).substr(0, header_end));
            if (pending.size() >= size) {
                std::string response = pending.substr(0, size);
                pending.erase(0, size);
                return response;
            }
        }
        if (read_some(impl_->socket.fd(), pending, deadline) <= 0) {
            return {};
        }
    }
}

std::string raw_connection::read_until(std::string_view marker, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string& pending = impl_->pending;
    for (;;) {
        const std::size_t at = pending.find(marker);
        if (at != std::string::npos) {
            std::string piece = pending.substr(0, at + marker.size());
            pending.erase(0, at + marker.size());
            return piece;
        }
        if (read_some(impl_->socket.fd(), pending, deadline) <= 0) {
            return {};
        }
    }
}

bool raw_connection::closed_within(std::chrono::milliseconds timeout, std::size_t* discarded) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string& pending = impl_->pending;
    for (;;) {
        const int got = read_some(impl_->socket.fd(), pending, deadline);
        if (got <= 0) {
            if (discarded != nullptr) {
                *discarded = pending.size();
            }
            pending.clear();
            return got == 0;
        }
    }
}

} // namespace srv_test
