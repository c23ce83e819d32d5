/// @file redis/detail/connection.hpp
/// @brief A small owner of one hiredis connection: connect with a timeout, a command as a vector
///        of arguments (binary-safe, no format strings), pipelining, and the non-blocking read a
///        subscriber connection needs. Used only on btq::redis_permits' own thread.
#pragma once

#include <hiredis/hiredis.h>

#include <sys/time.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace btq::redis_detail {

/// The connection failed (refused, reset, timed out, closed by the server): it is unusable.
class io_error : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

struct reply_deleter {
    void operator()(redisReply* reply) const noexcept { freeReplyObject(reply); }
};
/// One reply, owned.
using reply_ptr = std::unique_ptr<redisReply, reply_deleter>;

/// The text of a reply of type status, error or string.
[[nodiscard]] inline std::string_view text_of(const redisReply& reply) noexcept {
    return {reply.str, reply.len};
}

/// True if `reply` is an error reply.
[[nodiscard]] inline bool is_error(const redisReply& reply) noexcept {
    return reply.type == REDIS_REPLY_ERROR;
}

/// One hiredis connection. Move-only.
class connection {
  public:
    /// Connects to `host:port`; `timeout` bounds the connect and, afterwards, every read and
    /// write. Throws io_error naming the address and the cause.
    connection(const std::string& host, int port, std::chrono::milliseconds timeout)
        : where_(host + ":" + std::to_string(port)) {
        const timeval limit = to_timeval(timeout);
        context_.reset(redisConnectWithTimeout(host.c_str(), port, limit));
        if (!context_) {
            throw io_error("Redis at " + where_ + ": cannot allocate a connection");
        }
        if (context_->err != 0) {
            throw io_error("Redis at " + where_ + " unreachable: " + context_->errstr);
        }
        if (redisSetTimeout(context_.get(), limit) != REDIS_OK) {
            throw io_error("Redis at " + where_ + ": cannot set the socket timeout");
        }
        static_cast<void>(redisEnableKeepAlive(context_.get()));
    }

    /// Sends one command and waits for its reply (an error reply is returned, not thrown).
    reply_ptr command(const std::vector<std::string>& args) {
        append(args);
        return read();
    }

    /// Queues one command for sending (pipelining): read() its reply later, in order.
    void append(const std::vector<std::string>& args) {
        std::vector<const char*> pointers;
        std::vector<std::size_t> lengths;
        pointers.reserve(args.size());
        lengths.reserve(args.size());
        for (const std::string& arg : args) {
            pointers.push_back(arg.data());
            lengths.push_back(arg.size());
        }
        if (redisAppendCommandArgv(context_.get(), static_cast<int>(args.size()), pointers.data(),
                                   lengths.data()) != REDIS_OK) {
            fail("cannot queue a command");
        }
    }

    /// The next reply: sends what is queued, then waits up to the timeout.
    reply_ptr read() {
        void* reply = nullptr;
        if (redisGetReply(context_.get(), &reply) != REDIS_OK || reply == nullptr) {
            fail("no reply");
        }
        return reply_ptr(static_cast<redisReply*>(reply));
    }

    /// For a connection whose socket poll() found readable: reads what arrived, once, and
    /// returns every complete reply in it (none if a reply is still incomplete).
    std::vector<reply_ptr> read_available() {
        if (redisBufferRead(context_.get()) != REDIS_OK) {
            fail("read failed");
        }
        std::vector<reply_ptr> out;
        for (;;) {
            void* reply = nullptr;
            if (redisGetReplyFromReader(context_.get(), &reply) != REDIS_OK) {
                fail("unreadable reply");
            }
            if (reply == nullptr) {
                return out;
            }
            out.emplace_back(static_cast<redisReply*>(reply));
        }
    }

    /// The socket, for poll().
    [[nodiscard]] int fd() const noexcept { return context_->fd; }
    /// "host:port".
    [[nodiscard]] const std::string& where() const noexcept { return where_; }

  private:
    struct context_deleter {
        void operator()(redisContext* context) const noexcept { redisFree(context); }
    };

    static timeval to_timeval(std::chrono::milliseconds timeout) noexcept {
        timeval out{};
        out.tv_sec = static_cast<decltype(out.tv_sec)>(timeout.count() / 1000);
        out.tv_usec = static_cast<decltype(out.tv_usec)>((timeout.count() % 1000) * 1000);
        return out;
    }

    [[noreturn]] void fail(const char* what) const {
        const std::string cause =
            context_->err != 0 ? std::string(context_->errstr) : std::string(what);
        throw io_error("Redis at " + where_ + ": " +
                       (cause.empty() || cause == "Resource temporarily unavailable"
                            ? std::string("timed out")
                            : cause));
    }

    std::unique_ptr<redisContext, context_deleter> context_;
    std::string where_;
};

} // namespace btq::redis_detail
