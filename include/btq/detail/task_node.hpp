/// @file task_node.hpp
/// @brief A task as the queue holds it: the node with the task and the sink its outcome goes to,
///        and what only tasks with a deadline, a stop token or a run timeout carry.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <future>
#include <memory>
#include <optional>
#include <stop_token>
#include <type_traits>
#include <utility>

#include "../errors.hpp"
#include "../executor.hpp"
#include "../options.hpp"
#include "adaptive_mutex.hpp"
#include "deadline_timer.hpp"
#include "node_pool.hpp"
#include "waiting_list.hpp"

namespace btq::detail {

/// Where a task with extras is; changed under the queue's lock.
enum class node_state : std::uint8_t {
    admitting,   ///< being admitted; a stop seen now cancels it at once
    stop_seen,   ///< its stop was requested while it was being admitted
    waiting,     ///< in the waiting list
    running,     ///< handed to the executor
    backing_off, ///< failed, waiting to be tried again (submit_options::retry)
    left,        ///< answered without starting, or finished
};

/// Who answers a task with a run timeout: its own outcome or the timer (atomic, lock-free).
enum answer_claim : std::uint8_t { unclaimed, timer_answering, timer_answered, claimed };

struct timer_entry {
    queue_node* node = nullptr;
    bool run_deadline = false; ///< false: a queue deadline (waiting); true: a run timeout
    bool retry = false;        ///< the end of a retry's back-off
};

/// The callback a task's stop token runs: the queue cancels the task if it still waits.
template <class Queue>
struct stop_hook {
    Queue* queue;
    queue_node* node;
    void operator()() const noexcept { queue->on_stop_requested(node); }
};

/// What only tasks with a deadline, a stop token, a run timeout or a key carry, allocated with
/// them. Its key_link comes first, where the waiting list finds a keyed task's lane.
template <class Queue>
struct task_extras : key_link {
    // Recycled per thread like the nodes: allocated by the submitter, freed by the finisher.
    static void* operator new(std::size_t /*size*/) {
        return node_pool<sizeof(task_extras)>::allocate();
    }
    static void operator delete(void* memory) noexcept {
        node_pool<sizeof(task_extras)>::deallocate(memory);
    }

    node_state state = node_state::admitting;
    std::optional<clock::time_point> deadline;
    std::optional<clock::duration> run_timeout;
    typename deadline_timer<timer_entry>::handle timer_position{};
    bool timer_armed = false;
    bool overran = false; ///< answered task_timeout while it still runs
    std::atomic<std::uint8_t> claim{unclaimed};
    std::stop_token caller_stop;
    std::shared_ptr<const retry_policy> retry;   ///< submit_options::retry
    std::uint32_t attempt = 1;                   ///< the attempt running or next to run
    std::stop_source run_stop{std::nostopstate}; ///< only with a run timeout
    std::optional<std::stop_callback<stop_hook<Queue>>> on_stop; ///< last: destroyed first

    /// The token the executor gets: the caller's, or with a run timeout the queue's own.
    [[nodiscard]] std::stop_token task_token() const {
        return run_stop.stop_possible() ? run_stop.get_token() : caller_stop;
    }
};

/// A node of a gated queue: it keeps its task's permit (btq::start_gate) from the start until
/// the node is freed as the task ends, so destroying the node is the permit's release.
template <class Permit>
struct permit_node : queue_node {
    std::optional<Permit> permit; ///< empty while the task waits

  protected:
    permit_node() = default;
    ~permit_node() = default;

  public:
    permit_node(const permit_node&) = delete;
    permit_node& operator=(const permit_node&) = delete;
    permit_node(permit_node&&) = delete;
    permit_node& operator=(permit_node&&) = delete;
};

/// The sink of submit()'s future form.
template <class R>
struct promise_sink {
    std::promise<R> promise;
    void operator()(task_result<R>&& result) {
        if (!result.has_value()) {
            promise.set_exception(result.error());
        } else if constexpr (std::is_void_v<R>) {
            promise.set_value();
        } else {
            promise.set_value(std::move(result).value());
        }
    }
};

/// One task of `Queue` with the sink its outcome goes to. Nodes come from detail::node_pool.
template <class Queue, class Sink>
struct task_node final : Queue::node_base {
    using task_type = typename Queue::task_type;
    using result_type = typename Queue::result_type;
    using extras_type = task_extras<Queue>;

    template <class S>
    task_node(Queue* owner, task_type&& work, S&& answer)
        : queue(owner), task(std::move(work)), sink(std::forward<S>(answer)) {}

    // Nodes are recycled per thread (detail::node_pool); `size` is always sizeof(task_node).
    static void* operator new(std::size_t /*size*/) {
        return node_pool<sizeof(task_node)>::allocate();
    }
    static void operator delete(void* memory) noexcept {
        node_pool<sizeof(task_node)>::deallocate(memory);
    }

    Queue* queue;
    [[no_unique_address]] task_type task;
    [[no_unique_address]] Sink sink;

    [[nodiscard]] extras_type* found_extras() const noexcept {
        return static_cast<extras_type*>(this->extras);
    }

    void start(std::chrono::nanoseconds waited) override {
        const extras_type* found = found_extras();
        std::stop_token token = found != nullptr ? found->task_token() : std::stop_token();
        if constexpr (requires { queue->gate_->prepare(task, *this->permit); }) {
            try {
                queue->gate_->prepare(task, *this->permit); // e.g. hand the task a fencing token
            } catch (...) {
                // It ran nothing: answer as an executor that failed at once would.
                completion<result_type>(&on_complete, this, waited, std::move(token))
                    .set_exception(std::current_exception());
                return;
            }
        }
        try {
            if constexpr (std::is_copy_constructible_v<task_type>) {
                if (found != nullptr && found->retry) { // keeps the task for another attempt
                    queue->executor_.execute(
                        task_type(task),
                        completion<result_type>(&on_complete, this, waited, std::move(token)));
                    return;
                }
            }
            queue->executor_.execute(
                std::move(task),
                completion<result_type>(&on_complete, this, waited, std::move(token)));
        } catch (...) { // NOLINT(bugprone-empty-catch)
            // The completion handed to execute() has already answered (broken_completion).
        }
    }
    void fail(std::exception_ptr error) noexcept override {
        answer_error(std::move(error));
        delete this;
    }
    void answer_error(std::exception_ptr error) noexcept override {
        task_result<result_type> result(std::move(error));
        result.set_attempts(attempts_so_far());
        sink(std::move(result));
    }
    /// The attempts made: 0 before the first start, its attempt number once it has run.
    [[nodiscard]] std::size_t attempts_so_far() const noexcept {
        const extras_type* found = found_extras();
        if (found == nullptr) {
            return 0; // only a task that never started is answered this way without extras
        }
        return found->state == node_state::running ? found->attempt : found->attempt - 1;
    }

    /// The task returned: answer (unless its run timeout already did), free the slot.
    static void on_complete(void* context, task_result<result_type>&& result) noexcept {
        auto* self = static_cast<task_node*>(context);
        const bool failed = !result.has_value();
        const bool timed_out = failed && is_timeout(result.error());
        extras_type* found = self->found_extras();
        if (failed && found != nullptr && found->retry &&
            self->queue->retry_wanted(*found, result.error())) {
            std::uint8_t expected = unclaimed; // the run timeout has not answered: retry
            if (found->claim.compare_exchange_strong(expected, claimed,
                                                     std::memory_order_acq_rel)) {
                self->queue->retry_later(self);
                return;
            }
        }
        if (found == nullptr || claim_answer(*found)) {
            result.set_attempts(found != nullptr ? found->attempt : 1);
            self->sink(std::move(result));
        }
        self->queue->finish(self, failed, timed_out);
    }

    /// False when the run timeout answered first (waits until that answer is delivered).
    static bool claim_answer(extras_type& found) noexcept {
        std::uint8_t expected = unclaimed;
        if (found.claim.compare_exchange_strong(expected, claimed, std::memory_order_acq_rel)) {
            return true;
        }
        while (found.claim.load(std::memory_order_acquire) != timer_answered) {
            cpu_relax();
        }
        return false;
    }

    task_node(const task_node&) = delete;
    task_node& operator=(const task_node&) = delete;
    task_node(task_node&&) = delete;
    task_node& operator=(task_node&&) = delete;
    ~task_node() { delete found_extras(); }
};

/// The inbox's parked node; never started or answered.
struct stub_node final : queue_node {
    void start(std::chrono::nanoseconds /*waited*/) override {}
    void fail(std::exception_ptr /*error*/) noexcept override {}
    void answer_error(std::exception_ptr /*error*/) noexcept override {}
};

} // namespace btq::detail
