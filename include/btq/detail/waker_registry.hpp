/// @file detail/waker_registry.hpp
/// @brief The queues attached to a start gate, and waking them all from the gate's own threads
///        with the guarantee start_gate::detach() promises: once detach() returns, that waker is
///        never called again and no call of it still runs elsewhere.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <vector>

#include "../start_gate.hpp"

namespace btq::detail {

/// The wakers of the queues attached to one gate. Its mutex is never held while a waker runs.
class waker_registry {
  public:
    /// A queue attached (start_gate::attach).
    void attach(start_gate_waker waker) {
        std::lock_guard lock(mutex_);
        wakers_.push_back(waker);
    }

    /// A queue detached (start_gate::detach): returns once no wake_all() runs on another thread.
    /// Called from inside a wake-up (a queue destroyed by a task its wake-up ran), it does not
    /// wait for the wake-up on its own stack.
    void detach(start_gate_waker waker) {
        std::unique_lock lock(mutex_);
        std::erase(wakers_, waker);
        done_.wait(lock, [this] { return waking_ <= waking_on_this_thread(); });
    }

    /// Wakes every attached queue, on the calling thread. Never call it under a lock that a
    /// queue's call into the gate takes.
    void wake_all() noexcept {
        std::vector<start_gate_waker> calling;
        {
            std::lock_guard lock(mutex_);
            try {
                calling = wakers_;
            } catch (...) {
                return;
            }
            ++waking_;
        }
        const frame here{this, innermost()};
        innermost() = &here;
        for (const start_gate_waker& waker : calling) {
            waker();
        }
        innermost() = here.outer;
        {
            std::lock_guard lock(mutex_);
            --waking_;
        }
        done_.notify_all();
    }

  private:
    /// One wake_all() of some registry on this thread's stack.
    struct frame {
        const waker_registry* registry;
        const frame* outer;
    };
    static const frame*& innermost() noexcept {
        static thread_local const frame* top = nullptr;
        return top;
    }
    /// How many of this registry's wake_all() calls are on this thread's stack.
    [[nodiscard]] std::size_t waking_on_this_thread() const noexcept {
        std::size_t depth = 0;
        for (const frame* at = innermost(); at != nullptr; at = at->outer) {
            depth += at->registry == this ? 1 : 0;
        }
        return depth;
    }

    std::mutex mutex_;
    std::vector<start_gate_waker> wakers_;
    std::size_t waking_ = 0; // wake_all() calls running, on any thread
    std::condition_variable done_;
};

} // namespace btq::detail
