/// @file event_loop.hpp
/// @brief The plumbing the process executors' event threads share: an epoll set with an eventfd
///        to wake it, SIGPIPE handling for a thread that writes to children, and reaping one
///        child through its pidfd.
#pragma once

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <ctime>
#include <span>

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

/// Reaps the child behind `pidfd` if it has exited (only that child: never waitpid(-1)).
/// Returns false, leaving `info` alone, while it is still running.
inline bool try_reap(int pidfd, siginfo_t& info) noexcept {
    siginfo_t got{};
    if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &got,
                 WEXITED | WNOHANG) != 0 ||
        got.si_pid == 0) {
        return false;
    }
    info = got;
    return true;
}

} // namespace btq::process
