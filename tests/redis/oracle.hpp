// The independent oracle of the Redis tests: counters in a file every process maps shared,
// which the tasks themselves update (no part of btq counts here), and a fenced resource that
// accepts a write only with the highest fencing token it has seen.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace btq_redis_test {

/// Raises `most` to `value` if it is higher (a maximum several threads or processes update).
inline void raise_to(std::atomic<std::int64_t>& most, std::int64_t value) noexcept {
    std::int64_t seen = most.load();
    while (value > seen && !most.compare_exchange_weak(seen, value)) {
    }
}

struct oracle_state {
    std::atomic<std::int64_t> inside;     // tasks between enter() and leave()
    std::atomic<std::int64_t> max_inside; // the most ever seen at once
    std::atomic<std::int64_t> entries;
    std::atomic<std::uint64_t> highest_token; // the fenced resource's highest token
    std::atomic<std::int64_t> accepted_writes;
    std::atomic<std::int64_t> rejected_writes;
    std::atomic<std::int64_t> holding;        // "hold" helpers: set once their task runs
    std::atomic<std::uint64_t> holding_token; // and its token
    std::atomic<std::int64_t> stop_seen;      // a task saw its stop token requested
    std::atomic<std::int64_t> leases_lost;    // on_lease_lost calls, all processes
    std::atomic<std::int64_t> token_count;
    static constexpr std::size_t max_tokens = 4096;
    std::atomic<std::uint64_t> tokens[max_tokens]; // in entry order
};

/// The oracle in `path`, mapped shared (created zeroed by the first who opens it).
class oracle {
  public:
    explicit oracle(const std::string& path) {
        const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0 || ::ftruncate(fd, sizeof(oracle_state)) != 0) {
            throw std::runtime_error("oracle: cannot open " + path);
        }
        void* memory =
            ::mmap(nullptr, sizeof(oracle_state), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        ::close(fd);
        if (memory == MAP_FAILED) {
            throw std::runtime_error("oracle: cannot map " + path);
        }
        state_ = static_cast<oracle_state*>(memory);
    }
    oracle(const oracle&) = delete;
    oracle& operator=(const oracle&) = delete;
    ~oracle() { ::munmap(state_, sizeof(oracle_state)); }

    oracle_state* operator->() const noexcept { return state_; }

    /// A task starts using the resource with `token`.
    void enter(std::uint64_t token) const noexcept {
        raise_to(state_->max_inside, state_->inside.fetch_add(1) + 1);
        state_->entries.fetch_add(1);
        const std::int64_t at = state_->token_count.fetch_add(1);
        if (at >= 0 && static_cast<std::size_t>(at) < oracle_state::max_tokens) {
            state_->tokens[static_cast<std::size_t>(at)].store(token);
        }
    }
    /// It stops using it.
    void leave() const noexcept { state_->inside.fetch_sub(1); }

    /// A write to the fenced resource: accepted only if `token` is the highest seen.
    bool write(std::uint64_t token) const noexcept {
        std::uint64_t highest = state_->highest_token.load();
        while (token >= highest) {
            if (state_->highest_token.compare_exchange_weak(highest, token)) {
                state_->accepted_writes.fetch_add(1);
                return true;
            }
        }
        state_->rejected_writes.fetch_add(1);
        return false;
    }

  private:
    oracle_state* state_ = nullptr;
};

} // namespace btq_redis_test
