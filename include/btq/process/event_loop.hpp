/// @file event_loop.hpp
/// @brief The plumbing the process executors' event threads share: an epoll set with an eventfd
///        to wake it, a task's watch on its stop token, writing to a child's pipe (and SIGPIPE
///        handling for the thread that does), and reaping one child through its pidfd. The
///        thread itself and its hand-over list are event_thread.hpp; deadlines, deadline_heap.hpp.
#pragma once

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <optional>
#include <span>
#include <stop_token>
#include <string_view>

#include "unique_fd.hpp"

namespace btq::process {

/// An epoll set plus an eventfd that other threads use to wake its waiter.
class poller {
  public:
    poller() {
        epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
        if (!epoll_) {
            throw_errno("btq: epoll_create1");
        }
        wake_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (!wake_) {
            throw_errno("btq: eventfd");
        }
        epoll_event event{};
        event.events = EPOLLIN;
        event.data.ptr = nullptr; // marks the wake-up descriptor
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &event) != 0) {
            throw_errno("btq: epoll_ctl");
        }
    }

    /// Makes the current or next wait() return. Any thread.
    void wake() noexcept {
        const std::uint64_t one = 1;
        [[maybe_unused]] const auto written = ::write(wake_.get(), &one, sizeof one);
    }

    /// Watches `fd` for `events`; wait() reports it with `tag` (not null).
    void add(int fd, std::uint32_t events, void* tag) noexcept {
        control(EPOLL_CTL_ADD, fd, events, tag);
    }

    /// Changes what `fd` is watched for, adding it if it was not watched.
    void watch(int fd, std::uint32_t events, void* tag) noexcept {
        if (!control(EPOLL_CTL_MOD, fd, events, tag)) {
            control(EPOLL_CTL_ADD, fd, events, tag);
        }
    }

    /// Stops watching `fd` (before it is closed: a copy of it elsewhere would keep it watched).
    void remove(int fd) noexcept { ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr); }

    /// Stops watching `fd`, if it is open, and closes it.
    void remove_and_close(unique_fd& fd) noexcept {
        if (fd) {
            remove(fd.get());
            fd.reset();
        }
    }

    /// Waits up to `timeout_ms` (-1: no limit; 0: poll). Returns how many of `events` hold
    /// ready descriptors (their tags in `data.ptr`); a wake-up is consumed and reported through
    /// `woken` instead (so 0 events may still mean "look at your queue").
    int wait(std::span<epoll_event> events, int timeout_ms, bool* woken = nullptr) noexcept {
        const int ready =
            ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), timeout_ms);
        int kept = 0;
        for (int i = 0; i < ready; ++i) {
            const epoll_event& event = events[static_cast<std::size_t>(i)];
            if (event.data.ptr == nullptr) {
                std::uint64_t count = 0;
                [[maybe_unused]] const auto n = ::read(wake_.get(), &count, sizeof count);
                if (woken != nullptr) {
                    *woken = true;
                }
                continue;
            }
            events[static_cast<std::size_t>(kept++)] = event;
        }
        return kept;
    }

  private:
    bool control(int operation, int fd, std::uint32_t events, void* tag) noexcept {
        epoll_event event{};
        event.events = events;
        event.data.ptr = tag;
        return ::epoll_ctl(epoll_.get(), operation, fd, &event) == 0;
    }

    unique_fd epoll_;
    unique_fd wake_;
};

/// One task's watch on its stop token, for an executor whose event thread does the stopping. A
/// stop request (on any thread, inside request_stop()) only sets the task's flag and the
/// executor's `any` flag and wakes its poller: it never blocks and never calls into the queue,
/// so the watch's destructor, which waits for a request being handled on another thread, cannot
/// deadlock. The event thread, once woken with `any` set, looks for tasks whose requested() is
/// true. Destroy the watch (reset()) before the task's state that the flag lives in.
class stop_watch {
  public:
    /// Starts watching `token`, if it can be stopped. A token stopped already (or meanwhile)
    /// sets the flags at once, on this thread.
    void watch(const std::stop_token& token, std::atomic<bool>& any, poller& events) {
        if (token.stop_possible()) {
            callback_.emplace(token, relay{&requested_, &any, &events});
        }
    }
    /// Whether a stop was requested.
    [[nodiscard]] bool requested() const noexcept { return requested_.load(); }
    /// Stops watching; a stop requested from now on changes nothing.
    void reset() noexcept { callback_.reset(); }

  private:
    struct relay {
        std::atomic<bool>* requested;
        std::atomic<bool>* any;
        poller* events;
        void operator()() const noexcept {
            requested->store(true);
            any->store(true);
            events->wake();
        }
    };

    std::atomic<bool> requested_{false};
    std::optional<std::stop_callback<relay>> callback_; // last: goes first
};

/// A thread that writes to children's pipes blocks SIGPIPE for itself: a write to a pipe whose
/// reader has exited then fails with EPIPE instead of killing the process.
inline void block_sigpipe_on_this_thread() noexcept {
    sigset_t pipe_signal;
    sigemptyset(&pipe_signal);
    sigaddset(&pipe_signal, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_signal, nullptr);
}

/// Consumes the SIGPIPE that an EPIPE write left pending on this (blocking) thread.
inline void discard_pending_sigpipe() noexcept {
    sigset_t pipe_signal;
    sigemptyset(&pipe_signal);
    sigaddset(&pipe_signal, SIGPIPE);
    const timespec no_wait{0, 0};
    while (::sigtimedwait(&pipe_signal, nullptr, &no_wait) == SIGPIPE) {
    }
}

/// How far write_some() got.
enum class write_status : std::uint8_t {
    done,        ///< everything is written
    would_block, ///< the pipe is full: wait for EPOLLOUT and call again
    closed,      ///< the reader is gone (or another error): the rest cannot be written
};

/// Writes `data` from offset `sent` (advanced as bytes go) to the non-blocking descriptor `fd`,
/// on a thread that blocks SIGPIPE (the SIGPIPE of a reader gone is consumed).
inline write_status write_some(int fd, std::string_view data, std::size_t& sent) noexcept {
    while (sent < data.size()) {
        const ssize_t written = ::write(fd, data.data() + sent, data.size() - sent);
        if (written > 0) {
            sent += static_cast<std::size_t>(written);
            continue;
        }
        if (written < 0 && errno == EINTR) {
            continue;
        }
        if (written < 0 && errno == EAGAIN) {
            return write_status::would_block;
        }
        if (written < 0 && errno == EPIPE) {
            discard_pending_sigpipe();
        }
        return write_status::closed;
    }
    return write_status::done;
}

/// Reaps the child behind `pidfd` if it has exited (only that child: never waitpid(-1)).
/// Returns false, leaving `info` alone, while it is still running.
inline bool try_reap(int pidfd, siginfo_t& info, rusage* usage = nullptr) noexcept {
    siginfo_t got{};
    // The system call itself, whose fifth argument (which glibc's waitid() lacks) receives the
    // child's resource usage: its peak resident size.
    if (::syscall(SYS_waitid, static_cast<int>(P_PIDFD), pidfd, &got, WEXITED | WNOHANG, usage) !=
            0 ||
        got.si_pid == 0) {
        return false;
    }
    info = got;
    return true;
}

} // namespace btq::process
