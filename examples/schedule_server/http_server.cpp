#include "http_server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <sys/socket.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <stop_token>
#include <unordered_map>
#include <utility>

namespace schedule_server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);

double milliseconds(std::chrono::nanoseconds value) {
    return static_cast<double>(value.count()) / 1e6;
}

} // namespace

/// One open connection, as the server sees it from outside its coroutine.
struct connection {
    explicit connection(tcp::socket socket) : stream(std::move(socket)) {}
    beast::tcp_stream stream;
    bool busy = false; ///< between reading a request and writing its response (its thread only)
};

struct http_server::state : std::enable_shared_from_this<http_server::state> {
    state(io_pool& io, api& endpoints_in, http_options options_in)
        : contexts(io), endpoints(endpoints_in), options(std::move(options_in)),
          acceptor(io.main()) {}

    io_pool& contexts;
    api& endpoints;
    http_options options;
    tcp::acceptor acceptor;
    std::atomic<bool> stopping{false};

    mutable std::mutex connections_lock;
    std::unordered_map<connection*, std::weak_ptr<connection>> open;

    asio::awaitable<void> accept_loop() {
        auto self = shared_from_this();
        for (;;) {
            auto [error, socket] = co_await acceptor.async_accept(
                asio::any_io_executor(contexts.next().get_executor()), as_tuple_awaitable);
            if (error) {
                if (error == asio::error::operation_aborted || !acceptor.is_open()) {
                    co_return;
                }
                // EMFILE and friends: report, pause briefly, go on.
                std::fprintf(stderr, "schedule_server: accept failed: %s\n",
                             error.message().c_str());
                asio::steady_timer pause(acceptor.get_executor(), std::chrono::milliseconds(50));
                co_await pause.async_wait(as_tuple_awaitable);
                continue;
            }
            socket.set_option(tcp::no_delay(true));
            auto client = std::make_shared<connection>(std::move(socket));
            asio::co_spawn(client->stream.get_executor(), serve(self, client), asio::detached);
        }
    }

    /// Serves one connection, request after request (keep-alive), on the connection's context.
    static asio::awaitable<void> serve(std::shared_ptr<state> self,
                                       std::shared_ptr<connection> client) {
        {
            std::lock_guard lock(self->connections_lock);
            self->open.emplace(client.get(), client);
        }
        self->endpoints.open_connections.fetch_add(1, std::memory_order_relaxed);
        co_await self->serve_requests(*client);
        beast::error_code ignored;
        client->stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
        client->stream.close();
        {
            std::lock_guard lock(self->connections_lock);
            self->open.erase(client.get());
        }
        self->endpoints.open_connections.fetch_sub(1, std::memory_order_relaxed);
    }

    asio::awaitable<void> serve_requests(connection& client) {
        // The argument is the buffer's largest size (headers up to the parser's 16 KiB limit
        // must fit; a body streams through it). It starts at 512 bytes and grows only as a
        // request needs, so an idle connection costs little.
        beast::flat_buffer buffer(std::size_t{64} * 1024);
        for (;;) {
            http::request_parser<http::string_body> parser;
            parser.body_limit(options.body_limit);
            parser.header_limit(16 * 1024);
            client.stream.expires_after(options.idle_timeout);
            auto [read_error, read_bytes] =
                co_await http::async_read(client.stream, buffer, parser, as_tuple_awaitable);
            if (read_error) {
                const bool too_large = read_error == http::error::body_limit;
                const bool quiet_end = read_error == http::error::end_of_stream ||
                                       read_error == asio::error::eof ||
                                       read_error == beast::error::timeout ||
                                       read_error == asio::error::operation_aborted ||
                                       read_error == asio::error::connection_reset ||
                                       read_error == http::error::partial_message;
                if (too_large || !quiet_end) {
                    api_response refusal =
                        too_large
                            ? api::error(413, "request body larger than " +
                                                  std::to_string(options.body_limit) + " bytes")
                            : api::error(400, "malformed HTTP request: " + read_error.message());
                    const std::string unknown = "-";
                    co_await reply(client, refusal, unknown, unknown, false, 11);
                }
                co_return;
            }
            client.busy = true;
            http::request<http::string_body> request = parser.release();
            api_request call;
            call.method = request.method_string();
            call.target = request.target();
            call.content_type = request[http::field::content_type];
            call.authorization = request[http::field::authorization];
            call.body = std::move(request.body());

            api::routed job = endpoints.route(call);
            api_response response;
            bool client_left = false;
            if (job.immediate) {
                response = std::move(*job.immediate);
            } else {
                // While the request waits or runs, watch for the client closing the connection:
                // its hang-up requests stop on the request (submit_options::stop). Still
                // waiting, it is answered at once and never starts; running in spawn mode, its
                // process is stopped; in pool mode, its worker is stopped and replaced. Only
                // queued requests pay for the watch.
                std::stop_source hang_up;
                client.stream.expires_never();
                const int fd = client.stream.socket().native_handle();
                client.stream.socket().async_wait(
                    tcp::socket::wait_read, [hang_up, fd](const beast::error_code& error) mutable {
                        if (error) {
                            return;
                        }
                        char byte = 0;
                        if (::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0) {
                            hang_up.request_stop();
                        }
                    });
                const std::stop_token stop = hang_up.get_token();
                response = co_await endpoints.run(job, stop);
                client_left = stop.stop_requested();
                beast::error_code ignored;
                client.stream.socket().cancel(ignored);
            }

            const bool keep_alive =
                request.keep_alive() && !stopping.load(std::memory_order_acquire) && !client_left;
            const std::string method(request.method_string());
            const std::string target(request.target());
            const bool written =
                co_await reply(client, response, method, target, keep_alive, request.version());
            client.busy = false;
            if (!written || !keep_alive) {
                co_return;
            }
        }
    }

    /// Writes one response (its body is moved from) and logs it; false if the write failed.
    asio::awaitable<bool> reply(connection& client, api_response& response,
                                const std::string& method, const std::string& target,
                                bool keep_alive, unsigned version) {
        http::response<http::string_body> message{static_cast<http::status>(response.status),
                                                  version};
        message.set(http::field::server, "btq-schedule-server");
        message.set(http::field::content_type, response.content_type);
        for (auto& [name, value] : response.headers) {
            message.set(name, value);
        }
        const std::size_t bytes = response.body.size();
        message.body() = std::move(response.body);
        message.keep_alive(keep_alive);
        message.prepare_payload();
        client.stream.expires_after(options.io_timeout);
        auto [error, written] =
            co_await http::async_write(client.stream, message, as_tuple_awaitable);
        endpoints.record(response);
        if (options.access_log) {
            const std::size_t query = target.find('?');
            std::fprintf(stderr, "%s %.*s %u wait_ms=%.3f run_ms=%.3f bytes=%zu\n", method.c_str(),
                         static_cast<int>(std::min(query, target.size())), target.c_str(),
                         response.status, milliseconds(response.wait_time),
                         milliseconds(response.run_time), bytes);
        }
        co_return !error;
    }
};

http_server::http_server(io_pool& contexts, api& endpoints, http_options options)
    : state_(std::make_shared<state>(contexts, endpoints, std::move(options))) {}

http_server::~http_server() {
    beast::error_code ignored;
    state_->acceptor.close(ignored);
}

void http_server::start() {
    const tcp::endpoint endpoint(asio::ip::make_address(state_->options.address),
                                 state_->options.port);
    state_->acceptor.open(endpoint.protocol());
    state_->acceptor.set_option(asio::socket_base::reuse_address(true));
    state_->acceptor.bind(endpoint);
    state_->acceptor.listen(asio::socket_base::max_listen_connections);
    asio::co_spawn(state_->acceptor.get_executor(), state_->accept_loop(), asio::detached);
}

unsigned short http_server::port() const {
    return state_->acceptor.local_endpoint().port();
}

void http_server::stop_accepting() {
    state_->stopping.store(true, std::memory_order_release);
    asio::post(state_->acceptor.get_executor(), [self = state_] {
        beast::error_code ignored;
        self->acceptor.close(ignored);
    });
}

void http_server::close_idle_connections() {
    std::vector<std::shared_ptr<connection>> clients;
    {
        std::lock_guard lock(state_->connections_lock);
        for (auto& [key, weak] : state_->open) {
            if (auto client = weak.lock()) {
                clients.push_back(std::move(client));
            }
        }
    }
    for (auto& client : clients) {
        asio::post(client->stream.get_executor(), [client] {
            if (!client->busy) {
                client->stream.cancel();
            }
        });
    }
}

std::size_t http_server::connections() const {
    std::lock_guard lock(state_->connections_lock);
    return state_->open.size();
}

} // namespace schedule_server
