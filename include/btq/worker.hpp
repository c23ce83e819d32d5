/// @file worker.hpp
/// @brief btq::worker: makes a C++ program a worker of a btq worker pool
///        (the worker side of docs/worker-protocol.md).
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "process/frames.hpp"

namespace btq {

/// @brief The worker side of the worker protocol: say hello, then answer each request with the
///        handler registered for its operation, until btq closes the request descriptor.
///
/// - A handler's return value is sent as the result ('R'). An exception it throws becomes an
///   error ('E') whose message is its `what()`: that task fails and the worker goes on serving.
/// - A request for an operation with no handler is answered with the error
///   `unknown operation 'name'`.
/// - A result larger than the frame limit is answered with an error instead (the task fails;
///   btq would otherwise have to treat the oversized frame as a protocol error).
/// - Requests are handled one at a time, in order, on the thread that calls run().
/// - Standard output and standard error are free for the handlers' own use: btq captures and
///   logs them, never parses them.
///
/// @code
/// #include <btq/worker.hpp>
/// int main() {
///     btq::worker worker;
///     worker.on("echo", [](std::string_view body) { return std::string(body); });
///     worker.on("fail", [](std::string_view) -> std::string { throw std::runtime_error("no"); });
///     return worker.run(); // 0 when btq closes the requests, 2 on a protocol error
/// }
/// @endcode
class worker {
  public:
    /// @brief What handles one operation: the request body in, the result body out.
    using handler = std::function<std::string(std::string_view body)>;

    /// @brief Exit status of run() when btq closed the requests between two frames.
    static constexpr int clean_end = 0;
    /// @brief Exit status of run() on a protocol or I/O error (the message is on stderr).
    static constexpr int protocol_failure = 2;

    /// @brief Registers (or replaces) the handler of `operation`. Returns `*this`.
    /// @throws std::invalid_argument if `handle` is empty or the name is longer than 65535 bytes
    ///         (the longest a request can carry).
    worker& on(std::string operation, handler handle) {
        if (!handle) {
            throw std::invalid_argument("btq::worker::on: empty handler for '" + operation + "'");
        }
        if (operation.size() > 0xFFFFU) {
            throw std::invalid_argument("btq::worker::on: operation name longer than 65535 bytes");
        }
        handlers_.insert_or_assign(std::move(operation), std::move(handle));
        return *this;
    }

    /// @brief Sends hello, then serves requests until end of input.
    ///
    /// Reads and writes block; both are retried on EINTR and writes are always complete. A write
    /// to a pipe that btq has closed does not raise SIGPIPE: it is blocked on this thread for the
    /// duration of the write (and the signal it raised discarded), so run() returns 2 instead.
    /// Both descriptors are marked close-on-exec, so programs the handlers start do not inherit
    /// them (btq would otherwise not see end of file when this worker dies).
    ///
    /// @param request_fd  where requests come from (btq: 3)
    /// @param response_fd where hello, results and errors go (btq: 4)
    /// @param max_frame   largest frame accepted or sent, type byte included; match the pool's
    /// @return 0 when btq closed the requests between two frames; 2 on a protocol error (a frame
    ///         other than a request, a malformed or oversized frame, end of input inside a frame)
    ///         or a read or write error, with a one-line message on stderr (also last_error()).
    int run(int request_fd = 3, int response_fd = 4,
            std::size_t max_frame = protocol::default_max_frame) {
        last_error_.clear();
        try {
            mark_close_on_exec(request_fd);
            mark_close_on_exec(response_fd);
            write_all(response_fd,
                      protocol::encode(protocol::frame_type::hello, protocol::hello_text));
            protocol::frame_reader reader(max_frame);
            std::vector<char> buffer(read_size);
            for (;;) {
                const std::size_t got = read_some(request_fd, buffer);
                if (got == 0) {
                    if (reader.pending() != 0) {
                        throw protocol::protocol_error("end of input in the middle of a frame (" +
                                                       std::to_string(reader.pending()) +
                                                       " bytes of it received)");
                    }
                    return clean_end;
                }
                reader.feed(buffer.data(), got);
                while (auto request = reader.next()) {
                    write_all(response_fd, answer(*request, max_frame));
                }
            }
        } catch (const std::exception& error) {
            last_error_ = error.what();
        }
        std::fprintf(stderr, "%s\n", last_error_.c_str());
        std::fflush(stderr);
        return protocol_failure;
    }

    /// @brief One-shot mode, the same program run as a process per request: reads the body
    ///        from standard input to its end, answers `operation` on standard output.
    /// @return 0 on success; 1 if the operation is unknown or its handler threw (the message on
    ///         standard error).
    int run_once(const std::string& operation) {
        std::string body;
        std::vector<char> buffer(read_size);
        for (;;) {
            const ssize_t got = ::read(0, buffer.data(), buffer.size());
            if (got < 0 && errno == EINTR) {
                continue;
            }
            if (got <= 0) {
                break;
            }
            body.append(buffer.data(), static_cast<std::size_t>(got));
        }
        const auto found = handlers_.find(operation);
        try {
            if (found == handlers_.end()) {
                throw std::invalid_argument("unknown operation '" + operation + "'");
            }
            const std::string result = found->second(body);
            std::fwrite(result.data(), 1, result.size(), stdout);
            std::fflush(stdout);
            return 0;
        } catch (const std::exception& error) {
            std::fprintf(stderr, "%s\n", error.what());
            return 1;
        }
    }

    /// @brief The whole main(): `PROGRAM --once OPERATION` runs run_once(OPERATION); anything
    ///        else serves the worker protocol with run().
    /// @code
    /// int main(int argc, char** argv) { return make_worker().main(argc, argv); }
    /// @endcode
    int main(int argc, char** argv) {
        if (argc >= 3 && std::string_view(argv[1]) == "--once") {
            return run_once(argv[2]);
        }
        return run();
    }

    /// @brief Why the last run() returned 2; empty after a clean end.
    [[nodiscard]] const std::string& last_error() const noexcept { return last_error_; }

  private:
    static constexpr std::size_t read_size = std::size_t{64} << 10;

    /// The frame that answers one request (a result or an error).
    /// @throws protocol::protocol_error if `request` is not a well-formed request
    [[nodiscard]] std::string answer(const protocol::frame& request, std::size_t max_frame) const {
        if (request.type != protocol::frame_type::request) {
            throw protocol::protocol_error(std::string("unexpected '") +
                                           static_cast<char>(request.type) +
                                           "' frame: a worker receives only 'Q' requests");
        }
        const auto [operation, body] = protocol::decode_request(request.payload);
        const auto found = handlers_.find(operation);
        if (found == handlers_.end()) {
            return error_frame("unknown operation '" + std::string(operation) + "'", max_frame);
        }
        std::string result;
        try {
            result = found->second(body);
        } catch (const std::exception& error) {
            return error_frame(error.what(), max_frame);
        } catch (...) {
            return error_frame("the handler of '" + std::string(operation) +
                                   "' threw an exception not derived from std::exception",
                               max_frame);
        }
        if (result.size() >= max_frame) {
            return error_frame("the result of '" + std::string(operation) + "' is " +
                                   std::to_string(result.size()) +
                                   " bytes, over the frame limit of " + std::to_string(max_frame),
                               max_frame);
        }
        return protocol::encode(protocol::frame_type::result, result);
    }

    /// An 'E' frame, its message cut to fit the frame limit.
    [[nodiscard]] static std::string error_frame(std::string_view message, std::size_t max_frame) {
        const std::size_t room = max_frame > 0 ? max_frame - 1 : 0;
        return protocol::encode(protocol::frame_type::error, message.substr(0, room));
    }

    static void mark_close_on_exec(int fd) noexcept {
        const int flags = ::fcntl(fd, F_GETFD);
        if (flags >= 0) {
            ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
        }
    }

    /// Throws std::system_error for errno, with a hint when the descriptor is not open because
    /// the program was not started by btq.
    [[noreturn]] static void throw_io_error(const char* action, int fd) {
        const int error_number = errno;
        std::string what =
            std::string("btq: worker: cannot ") + action + " descriptor " + std::to_string(fd);
        if (error_number == EBADF &&
            std::getenv("BTQ_WORKER_PROTOCOL") == nullptr) { // NOLINT(concurrency-mt-unsafe)
            what += " (not open: this program is meant to be started by a btq worker pool)";
        }
        throw std::system_error(error_number, std::generic_category(), what);
    }

    /// Waits until `fd` is ready, for a descriptor someone made non-blocking.
    static void wait_ready(int fd, short events) {
        pollfd ready{.fd = fd, .events = events, .revents = 0};
        while (::poll(&ready, 1, -1) < 0 && errno == EINTR) {
        }
    }

    /// One read of up to buffer.size() bytes; 0 at end of input.
    static std::size_t read_some(int fd, std::vector<char>& buffer) {
        for (;;) {
            const ssize_t got = ::read(fd, buffer.data(), buffer.size());
            if (got >= 0) {
                return static_cast<std::size_t>(got);
            }
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                wait_ready(fd, POLLIN);
                continue;
            }
            throw_io_error("read requests from", fd);
        }
    }

    /// Blocks SIGPIPE on this thread while a write is under way; if the write raised it (the
    /// reader is gone), discards it before restoring the mask, so the process is not killed.
    class sigpipe_blocked {
      public:
        sigpipe_blocked() noexcept {
            sigemptyset(&pipe_signal_);
            sigaddset(&pipe_signal_, SIGPIPE);
            ::pthread_sigmask(SIG_BLOCK, &pipe_signal_, &previous_);
            sigset_t pending;
            sigemptyset(&pending);
            ::sigpending(&pending);
            already_pending_ = sigismember(&pending, SIGPIPE) == 1;
        }
        sigpipe_blocked(const sigpipe_blocked&) = delete;
        sigpipe_blocked& operator=(const sigpipe_blocked&) = delete;
        sigpipe_blocked(sigpipe_blocked&&) = delete;
        sigpipe_blocked& operator=(sigpipe_blocked&&) = delete;
        ~sigpipe_blocked() { ::pthread_sigmask(SIG_SETMASK, &previous_, nullptr); }

        /// Takes back the SIGPIPE the failed write raised (not one that was pending before).
        void discard_raised() noexcept {
            if (already_pending_) {
                return;
            }
            const timespec no_wait{0, 0};
            while (::sigtimedwait(&pipe_signal_, nullptr, &no_wait) < 0 && errno == EINTR) {
            }
        }

      private:
        sigset_t pipe_signal_{};
        sigset_t previous_{};
        bool already_pending_ = false;
    };

    static void write_all(int fd, std::string_view bytes) {
        sigpipe_blocked guard;
        std::size_t written = 0;
        while (written < bytes.size()) {
            const ssize_t now = ::write(fd, bytes.data() + written, bytes.size() - written);
            if (now >= 0) {
                written += static_cast<std::size_t>(now);
                continue;
            }
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                wait_ready(fd, POLLOUT);
                continue;
            }
            if (errno == EPIPE) {
                const int saved = errno;
                guard.discard_raised();
                errno = saved;
            }
            throw_io_error("write responses to", fd);
        }
    }

    std::map<std::string, handler, std::less<>> handlers_;
    std::string last_error_;
};

} // namespace btq
