/// @file adaptive_mutex.hpp
/// @brief A mutex that spins briefly before sleeping. The queue's critical sections are a few
///        dozen nanoseconds, far shorter than a futex sleep and wake-up, so a contended lock
///        is usually free again within the spin and no thread has to sleep.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>

namespace btq::detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield" ::: "memory");
#endif
}

/// Lockable (use with std::lock_guard, std::unique_lock, std::condition_variable_any).
/// States: 0 free, 1 locked, 2 locked and a thread may be asleep waiting for it.
class adaptive_mutex {
  public:
    adaptive_mutex() noexcept = default;
    ~adaptive_mutex() = default;
    adaptive_mutex(const adaptive_mutex&) = delete;
    adaptive_mutex& operator=(const adaptive_mutex&) = delete;
    adaptive_mutex(adaptive_mutex&&) = delete;
    adaptive_mutex& operator=(adaptive_mutex&&) = delete;

    void lock() noexcept {
        std::uint32_t expected = 0;
        if (!state_.compare_exchange_strong(expected, 1, std::memory_order_acquire,
                                            std::memory_order_relaxed)) {
            lock_contended();
        }
    }

    [[nodiscard]] bool try_lock() noexcept {
        std::uint32_t expected = 0;
        return state_.compare_exchange_strong(expected, 1, std::memory_order_acquire,
                                              std::memory_order_relaxed);
    }

    void unlock() noexcept {
        if (state_.exchange(0, std::memory_order_release) == 2) {
            state_.notify_one();
        }
    }

  private:
    void lock_contended() noexcept {
        for (int spin = 0; spin < spin_limit; ++spin) {
            cpu_relax();
            if (state_.load(std::memory_order_relaxed) == 0 && try_lock()) {
                return;
            }
        }
        while (state_.exchange(2, std::memory_order_acquire) != 0) {
            state_.wait(2, std::memory_order_relaxed);
        }
    }

    static constexpr int spin_limit = 128;
    std::atomic<std::uint32_t> state_{0};
};

} // namespace btq::detail
