#include "http_server.hpp"
#include "request_head.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

namespace schedule_server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);

std::string peer_address(const tcp::socket& socket) {
    beast::error_code error;
    const tcp::endpoint remote = socket.remote_endpoint(error);
    return error ? std::string() : remote.address().to_string();
}

double milliseconds(std::chrono::nanoseconds value) {
    return static_cast<double>(value.count()) / 1e6;
}

} // namespace

/// One open connection, as the server sees it from outside its coroutine.
struct connection {
    explicit connection(tcp::socket socket)
        : peer(peer_address(socket)), stream(std::move(socket)) {}
    /// The client's address without its port (its key for the queue's per-key fairness).
    std::string peer;
    beast::tcp_stream stream;
    bool busy = false; ///< between reading a request and writing its response (its thread only)
    /// While the connection writes an event stream: the timer between its events, cancelled to
    /// end the stream at once (at shutdown, or when the client hangs up). Its thread only.
    std::shared_ptr<asio::steady_timer> event_ticker;
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

    /// Connections being served (counted by the accept loop before it hands one over, so the
    /// limit holds however fast they come) and refusals being written.
    std::atomic<std::size_t> serving{0};
    std::atomic<std::size_t> refusing{0};
    /// Event streams open now (at most options.max_event_streams).
    std::atomic<std::size_t> event_streams{0};
    /// Wakes the accept loop while it waits for a refusal to end (cancelled from its
    /// executor, where only the accept loop and the posts of finishing refusals use it).
    std::optional<asio::steady_timer> wake;

    /// Accepts connections until the acceptor is closed. A failing accept (EMFILE, ENFILE,
    /// ENOBUFS: out of descriptors or memory) never ends the loop and never makes it spin: it
    /// waits 10 ms, doubling to 1 s while accept keeps failing, and says so once, not once per
    /// try; the first accept that works again resets the wait and says so.
    asio::awaitable<void> accept_loop() {
        auto self = shared_from_this();
        wake.emplace(acceptor.get_executor());
        std::chrono::milliseconds backoff{0};
        std::uint64_t failures = 0;
        for (;;) {
            auto [error, socket] = co_await acceptor.async_accept(
                asio::any_io_executor(contexts.next().get_executor()), as_tuple_awaitable);
            if (error) {
                if (error == asio::error::operation_aborted || !acceptor.is_open()) {
                    co_return;
                }
                if (failures++ == 0) {
                    std::fprintf(stderr,
                                 "schedule_server: accept failed: %s; retrying, waiting up to "
                                 "1 s between tries while it fails\n",
                                 error.message().c_str());
                }
                backoff = std::clamp(backoff * 2, std::chrono::milliseconds(10),
                                     std::chrono::milliseconds(1000));
                asio::steady_timer pause(acceptor.get_executor(), backoff);
                co_await pause.async_wait(as_tuple_awaitable);
                continue;
            }
            if (failures > 0) {
                std::fprintf(stderr,
                             "schedule_server: accept works again after %llu failed tries\n",
                             static_cast<unsigned long long>(failures));
                failures = 0;
                backoff = std::chrono::milliseconds(0);
            }
            beast::error_code ignored; // a client that already reset: served, and it fails
            socket.set_option(tcp::no_delay(true), ignored);
            if (options.max_connections != 0 &&
                serving.load(std::memory_order_acquire) >= options.max_connections) {
                while (refusing.load(std::memory_order_acquire) >= options.max_refusing) {
                    wake->expires_at(asio::steady_timer::time_point::max());
                    co_await wake->async_wait(as_tuple_awaitable);
                    if (!acceptor.is_open()) {
                        co_return;
                    }
                }
                refusing.fetch_add(1, std::memory_order_acq_rel);
                auto refused = std::make_shared<connection>(std::move(socket));
                asio::co_spawn(refused->stream.get_executor(), refuse_connection(self, refused),
                               asio::detached);
                continue;
            }
            serving.fetch_add(1, std::memory_order_acq_rel);
            auto client = std::make_shared<connection>(std::move(socket));
            asio::co_spawn(client->stream.get_executor(), serve(self, client), asio::detached);
        }
    }

    /// A connection beyond max_connections: its request's header is read (at most 1 s), it is
    /// answered 503 with `Retry-After` and `Connection: close`, and its end is closed; what the
    /// client still sends is read and dropped until it closes (at most 1 s more), so the close
    /// is no reset that could destroy the answer before the client read it.
    static asio::awaitable<void> refuse_connection(std::shared_ptr<state> self,
                                                   std::shared_ptr<connection> refused) {
        beast::tcp_stream& stream = refused->stream;
        beast::flat_buffer buffer(std::size_t{16} * 1024 + 512);
        http::request_parser<http::empty_body> parser;
        parser.header_limit(16 * 1024);
        stream.expires_after(std::chrono::seconds(1));
        auto [read_error, read_bytes] =
            co_await http::async_read_header(stream, buffer, parser, as_tuple_awaitable);
        const unsigned version = !read_error && parser.get().version() == 10 ? 10U : 11U;
        api_response refusal = api::error(
            503, "too many connections: " + std::to_string(self->options.max_connections) +
                     " are open (--max-connections); try again later");
        http::response<http::string_body> message{http::status::service_unavailable, version};
        message.set(http::field::server, "btq-schedule-server");
        message.set(http::field::content_type, refusal.content_type);
        message.set(http::field::retry_after, "1");
        self->endpoints.record(refusal, read_error ? "-" : parser.get().method_string(),
                               read_error ? "-" : parser.get().target());
        message.body() = std::move(refusal.body);
        message.keep_alive(false);
        message.prepare_payload();
        stream.expires_after(std::chrono::seconds(1));
        auto [write_error, written] =
            co_await http::async_write(stream, message, as_tuple_awaitable);
        self->endpoints.refused_connections.fetch_add(1, std::memory_order_relaxed);
        if (self->options.access_log) {
            std::fprintf(stderr, "- - 503 refused: %zu connections open (--max-connections)\n",
                         self->options.max_connections);
        }
        if (write_error) {
            stream.close();
        } else {
            co_await close_in_stages(stream, std::chrono::seconds(1));
        }
        self->refusing.fetch_sub(1, std::memory_order_acq_rel);
        self->wake_acceptor();
    }

    /// The connections open now.
    std::vector<std::shared_ptr<connection>> open_clients() const {
        std::vector<std::shared_ptr<connection>> clients;
        std::lock_guard lock(connections_lock);
        for (const auto& [key, weak] : open) {
            if (auto client = weak.lock()) {
                clients.push_back(std::move(client));
            }
        }
        return clients;
    }

    /// Lets the accept loop go on if it waits for a refusal to end.
    void wake_acceptor() {
        asio::post(acceptor.get_executor(), [self = shared_from_this()] {
            if (self->wake) {
                self->wake->cancel();
            }
        });
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
        co_await close_in_stages(client->stream, std::chrono::seconds(2));
        {
            std::lock_guard lock(self->connections_lock);
            self->open.erase(client.get());
        }
        self->endpoints.open_connections.fetch_sub(1, std::memory_order_relaxed);
        self->serving.fetch_sub(1, std::memory_order_acq_rel);
    }

    /// Closes a connection as RFC 9112 section 9.6 asks: the write side first, then whatever the
    /// client still sends is read and dropped until it closes its side (at most 1 MiB, for at most
    /// `linger`). Closed at once with bytes unread, the socket would be reset, and a reset can
    /// destroy the last response (a 408, a 413, a 503) before a client still sending reads it.
    static asio::awaitable<void> close_in_stages(beast::tcp_stream& stream,
                                                 std::chrono::seconds linger) {
        beast::error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
        stream.expires_after(linger);
        std::array<char, 4096> dropped{};
        for (std::size_t total = 0; total < (std::size_t{1} << 20);) {
            auto [error, got] =
                co_await stream.async_read_some(asio::buffer(dropped), as_tuple_awaitable);
            if (error) {
                break;
            }
            total += got;
        }
        stream.close();
    }

    /// Beast's session loop: wait for a request, read its header, route it, read its body
    /// (after `100 Continue` when the client waits for one), answer, and go on while the
    /// connection is kept alive.
    asio::awaitable<void> serve_requests(connection& client) {
        // The argument is the buffer's largest size (headers up to the parser's 16 KiB limit
        // must fit; a body streams through it). It starts at 512 bytes and grows only as a
        // request needs, so an idle connection costs little.
        beast::flat_buffer buffer(std::size_t{64} * 1024);
        for (;;) {
            if (!co_await wait_for_request(client, buffer)) {
                co_return; // closed, or idle: no request began, so nothing to answer
            }
            http::request_parser<http::string_body> parser;
            parser.body_limit(options.body_limit);
            parser.header_limit(16 * 1024);
            const read_result header = co_await read_timed(client, options.header_timeout, [&] {
                return http::async_read_header(client.stream, buffer, parser, as_tuple_awaitable);
            });
            if (header.error) {
                co_await refuse(client, refusal_for(header, "header", options.header_timeout));
                co_return;
            }
            client.busy = true;
            api_request call = describe(parser.get());
            call.peer = client.peer;
            api::routed job = endpoints.route(call);
            if (!co_await read_body(client, buffer, parser, call, job)) {
                co_return;
            }
            endpoints.take_body(job, std::move(parser.get().body()), call.content_type);
            if (job.event_stream && !job.immediate) {
                co_await stream_events(client, parser.get());
                co_return; // a stream ends with its connection
            }

            bool client_left = false;
            api_response response;
            if (job.immediate) {
                response = std::move(*job.immediate);
            } else { // (not in a ?: expression: GCC 12 miscompiles co_await there)
                response = co_await run_watched(client, job, client_left);
            }
            const bool keep_alive = parser.get().keep_alive() &&
                                    !stopping.load(std::memory_order_acquire) && !client_left;
            const bool written = co_await reply(client, response, parser.get(), keep_alive);
            client.busy = false;
            if (!written || !keep_alive) {
                co_return;
            }
        }
    }

    /// Reads the body of a routed request, after `100 Continue` when the client waits for one.
    /// A client that waits and is refused gets the refusal at once, and its body is never read.
    /// False when the connection is to be closed (the refusal, if any, written).
    asio::awaitable<bool> read_body(connection& client, beast::flat_buffer& buffer,
                                    http::request_parser<http::string_body>& parser,
                                    const api_request& call, api::routed& job) {
        if (parser.is_done()) {
            co_return true;
        }
        // route() answered every expectation but 100-continue with 417.
        if (call.version >= 11 && !call.expect.empty()) {
            if (!job.immediate) {
                job.immediate = endpoints.refuse_before_body(job);
            }
            if (job.immediate) {
                co_await reply(client, *job.immediate, parser.get(), false);
                co_return false;
            }
            if (!co_await send_continue(client)) {
                co_return false;
            }
        }
        const read_result body = co_await read_timed(client, options.body_timeout, [&] {
            return http::async_read(client.stream, buffer, parser, as_tuple_awaitable);
        });
        if (body.error) {
            co_await refuse(client, refusal_for(body, "body", options.body_timeout));
            co_return false;
        }
        co_return true;
    }

    /// Waits, at most the idle timeout, for the first byte of the next request (it may already
    /// be in `buffer`); false if the connection closed or stayed idle.
    asio::awaitable<bool> wait_for_request(connection& client, beast::flat_buffer& buffer) {
        if (buffer.size() > 0) {
            co_return true;
        }
        client.stream.expires_after(options.idle_timeout);
        auto [error, received] =
            co_await client.stream.async_read_some(buffer.prepare(512), as_tuple_awaitable);
        buffer.commit(received);
        co_return !error && received > 0;
    }

    struct read_result {
        beast::error_code error;
        bool expired = false; ///< the deadline passed; the socket is still open
    };

    /// Runs `read` (a read on the client's socket) with a deadline. When it passes, the read is
    /// cancelled but the socket stays open (the stream's own timeout would close it), so the
    /// client can still be told 408.
    template <class Read>
    asio::awaitable<read_result> read_timed(connection& client, std::chrono::milliseconds limit,
                                            Read read) {
        client.stream.expires_never();
        auto armed = std::make_shared<bool>(true);
        auto expired = std::make_shared<bool>(false);
        asio::steady_timer deadline(client.stream.get_executor(), limit);
        deadline.async_wait(
            [armed, expired, &socket = client.stream.socket()](const beast::error_code& error) {
                if (!error && *armed) {
                    *expired = true;
                    beast::error_code ignored;
                    socket.cancel(ignored);
                }
            });
        auto [error, bytes] = co_await read();
        *armed = false;
        deadline.cancel();
        co_return read_result{error, *expired};
    }

    /// The answer to a read that failed, or nothing when there is nobody to answer (the client
    /// closed or reset the connection, or shutdown closed it between requests).
    [[nodiscard]] std::optional<api_response> refusal_for(const read_result& read,
                                                          std::string_view part,
                                                          std::chrono::milliseconds limit) const {
        if (read.expired) {
            return api::error(408, "request " + std::string(part) + " not received within " +
                                       std::to_string(limit.count()) + " ms");
        }
        const beast::error_code& error = read.error;
        if (error == http::error::body_limit) {
            return api::error(413, "request body larger than " +
                                       std::to_string(options.body_limit) + " bytes");
        }
        const bool client_gone =
            error == http::error::end_of_stream || error == asio::error::eof ||
            error == beast::error::timeout || error == asio::error::operation_aborted ||
            error == asio::error::connection_reset || error == http::error::partial_message;
        if (client_gone) {
            return std::nullopt;
        }
        return api::error(400, "malformed HTTP request: " + error.message());
    }

    /// Writes a refusal, if there is one, and lets the connection close.
    asio::awaitable<void> refuse(connection& client, std::optional<api_response> refusal) {
        if (refusal) {
            co_await reply(client, *refusal, http::request<http::string_body>{}, false);
        }
    }

    /// The interim answer a client that sent `Expect: 100-continue` waits for.
    asio::awaitable<bool> send_continue(connection& client) {
        http::response<http::empty_body> interim{http::status::continue_, 11};
        client.stream.expires_after(options.io_timeout);
        auto [error, written] =
            co_await http::async_write(client.stream, interim, as_tuple_awaitable);
        co_return !error;
    }

    /// Runs a queued request while watching the connection: the client's hang-up requests stop
    /// on the request (submit_options::stop). Still waiting, it is answered at once and never
    /// starts; running in spawn mode, its process is stopped; in pool mode, its worker is
    /// stopped and replaced. Only queued requests pay for the watch.
    asio::awaitable<api_response> run_watched(connection& client, api::routed& job,
                                              bool& client_left) {
        std::stop_source hang_up;
        watch_for_hangup(client, hang_up);
        const std::stop_token stop = hang_up.get_token();
        api_response response = co_await endpoints.run(job, stop);
        client_left = stop.stop_requested();
        beast::error_code ignored;
        client.stream.socket().cancel(ignored);
        co_return response;
    }

    /// Requests stop on `hang_up` when the client closes its end of the connection.
    static void watch_for_hangup(connection& client, std::stop_source hang_up) {
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
    }

    /// GET /api/queue-stats/stream: server-sent events (text/event-stream), first `retry:
    /// 1000`, then an event with the JSON of /api/queue-stats now and every second after, until
    /// options.event_stream_duration has passed, shutdown begins or the client hangs up. The
    /// response has no length: it ends when the server closes the connection (`Connection:
    /// close`, for HTTP/1.0 and 1.1 alike). Beyond options.max_event_streams: 503 with
    /// `Retry-After: 5`. The stream waits on a timer of the connection's own executor: no
    /// thread, and no place in the task queue.
    asio::awaitable<void> stream_events(connection& client,
                                        const http::request<http::string_body>& request) {
        if (event_streams.fetch_add(1, std::memory_order_acq_rel) >= options.max_event_streams) {
            event_streams.fetch_sub(1, std::memory_order_acq_rel);
            api_response refused = api::error(
                503, "too many event streams: " + std::to_string(options.max_event_streams) +
                         " are open (--max-event-streams); poll /api/queue-stats, or try again "
                         "later");
            refused.headers.emplace_back("Retry-After", "5");
            co_await reply(client, refused, request, false);
            co_return;
        }
        const auto started = std::chrono::steady_clock::now();
        std::uint64_t events = 0;
        http::response<http::empty_body> head{http::status::ok,
                                              request.version() == 10 ? 10U : 11U};
        head.set(http::field::server, "btq-schedule-server");
        head.set(http::field::content_type, "text/event-stream");
        head.set(http::field::cache_control, "no-cache");
        head.keep_alive(false);
        http::response_serializer<http::empty_body> serializer{head};
        client.stream.expires_after(options.io_timeout);
        auto [header_error, header_bytes] =
            co_await http::async_write_header(client.stream, serializer, as_tuple_awaitable);
        if (!header_error && request.method() != http::verb::head) {
            auto ticker = std::make_shared<asio::steady_timer>(client.stream.get_executor());
            client.event_ticker = ticker;
            watch_stream_hangup(client, ticker);
            const auto end = started + options.event_stream_duration;
            std::string chunk = "retry: 1000\n\n";
            while (!stopping.load(std::memory_order_acquire)) {
                chunk += "data: ";
                chunk += endpoints.queue_stats_json();
                chunk += "\n\n";
                client.stream.expires_after(options.io_timeout);
                auto [error, written] = co_await asio::async_write(
                    client.stream, asio::buffer(chunk), as_tuple_awaitable);
                if (error) {
                    break;
                }
                ++events;
                chunk.clear();
                const auto now = std::chrono::steady_clock::now();
                if (now >= end || stopping.load(std::memory_order_acquire)) {
                    break;
                }
                ticker->expires_after(std::min<std::chrono::steady_clock::duration>(
                    std::chrono::seconds(1), end - now));
                auto [waited] = co_await ticker->async_wait(as_tuple_awaitable);
                if (waited || std::chrono::steady_clock::now() >= end) {
                    break; // cancelled (shutdown, hang-up), or the stream's time is up
                }
            }
            client.event_ticker.reset();
            beast::error_code ignored;
            client.stream.socket().cancel(ignored); // the hang-up watch
        }
        event_streams.fetch_sub(1, std::memory_order_acq_rel);
        api_response done;
        endpoints.record(done, request.method_string(), request.target());
        if (options.access_log) {
            const std::string_view method = request.method_string();
            const std::string_view target = request.target();
            std::fprintf(
                stderr, "%.*s %.*s 200 event stream: %llu events in %.1f s\n",
                static_cast<int>(method.size()), method.data(),
                static_cast<int>(std::min(target.find('?'), target.size())), target.data(),
                static_cast<unsigned long long>(events),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
        }
    }

    /// Ends an event stream at once when its client closes the connection: a stream writes
    /// only once a second, and learns of a hang-up late from its writes alone.
    static void watch_stream_hangup(connection& client,
                                    std::shared_ptr<asio::steady_timer> ticker) {
        const int fd = client.stream.socket().native_handle();
        client.stream.socket().async_wait(
            tcp::socket::wait_read,
            [ticker = std::move(ticker), fd](const beast::error_code& error) {
                if (error) {
                    return;
                }
                char byte = 0;
                // Closed (0) or failed: end the stream; bytes sent (a next request) are left
                // unread, the stream goes on and the connection closes after it.
                if (::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) <= 0) {
                    ticker->cancel();
                }
            });
    }

    /// Writes one response to `request` (its body is moved from) and logs it; false if the
    /// write failed. To a HEAD request, only the header is written (its Content-Length that of
    /// the body a GET would get).
    asio::awaitable<bool> reply(connection& client, api_response& response,
                                const http::request<http::string_body>& request, bool keep_alive) {
        endpoints.record(response, request.method_string().empty() ? "-" : request.method_string(),
                         request.target().empty() ? "-" : request.target());
        http::response<http::string_body> message{static_cast<http::status>(response.status),
                                                  request.version() == 10 ? 10U : 11U};
        message.set(http::field::server, "btq-schedule-server");
        if (!response.content_type.empty()) {
            message.set(http::field::content_type, response.content_type);
        }
        for (auto& [name, value] : response.headers) {
            message.set(name, value);
        }
        const std::size_t bytes = response.body.size();
        message.body() = std::move(response.body);
        message.keep_alive(keep_alive);
        if (response.status != 304) { // a 304 has no body, and no Content-Length of its own
            message.prepare_payload();
        }
        client.stream.expires_after(options.io_timeout);
        beast::error_code error;
        if (request.method() == http::verb::head) {
            http::response_serializer<http::string_body> serializer{message};
            std::tie(error, std::ignore) =
                co_await http::async_write_header(client.stream, serializer, as_tuple_awaitable);
        } else {
            std::tie(error, std::ignore) =
                co_await http::async_write(client.stream, message, as_tuple_awaitable);
        }
        if (options.access_log) {
            const std::string_view method = request.method_string().empty()
                                                ? std::string_view("-")
                                                : std::string_view(request.method_string());
            const std::string_view target = request.target().empty()
                                                ? std::string_view("-")
                                                : std::string_view(request.target());
            std::fprintf(stderr, "%.*s %.*s %u wait_ms=%.3f run_ms=%.3f bytes=%zu\n",
                         static_cast<int>(method.size()), method.data(),
                         static_cast<int>(std::min(target.find('?'), target.size())), target.data(),
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
        if (self->wake) {
            self->wake->cancel(); // the accept loop may wait for a refusal to end
        }
    });
    // Event streams end now, not at their next event (they would never end by themselves).
    for (auto& client : state_->open_clients()) {
        asio::post(client->stream.get_executor(), [client] {
            if (client->event_ticker) {
                client->event_ticker->cancel();
            }
        });
    }
}

void http_server::close_idle_connections() {
    for (auto& client : state_->open_clients()) {
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
