/// @file gates/gate_chain.hpp
/// @brief gate_chain: one start gate (btq::start_gate) made of several, asked in order: a
///        task starts only when every gate of the chain grants it, and gives every permit back
///        when it ends. The usual chain is memory first, then the cluster-wide permits:
///        `btq::gate_chain<btq::memory_gate, btq::redis_permits>`.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <stop_token>
#include <tuple>
#include <utility>
#include <vector>

#include "../start_gate.hpp"

namespace btq {

/// @brief A gate that can take back, without waking anyone, a permit whose task did not start
///        after all (a later gate of a btq::gate_chain refused it). `return_unstarted` is
///        called under a queue's lock: it must not block, throw, or call a waker.
template <class G>
concept returns_unstarted = requires(G& gate, typename G::permit_type&& permit) {
    gate.return_unstarted(std::move(permit));
};

/// @brief A start gate made of `Gates...`, asked in that order, all of which must grant.
///
/// How it asks: try_acquire() asks the first gate, then the next, and stops at the first
/// refusal; the permits already granted go back to their gates through `return_unstarted`
/// (every gate but the last must have it: btq::memory_gate and btq::redis_permits do), so a
/// refusal wakes nobody and costs nothing. The gate that refused is the one that wakes the
/// queue when it may grant, as with a single gate.
///
/// Demand: the tasks a queue holds back are told (demand()) to the gate that refused that
/// queue's last start, and 0 to the others: an asynchronous gate (btq::redis_permits) fetches
/// permits only while it is what holds the queue, so a queue waiting for memory holds no
/// cluster-wide lease. A later gate is told at first only of the one task that passed the gates
/// before it, then, while it keeps refusing starts that passed them, of twice as many each time
/// (up to every task held), and of none after a start that passed every gate until it refuses
/// again: while an earlier gate lets one task through at a time (memory short, its progress
/// guarantee), the later one fetches one permit at a time, never a batch it would give back.
///
/// Order: put the cheap, local gates first and the remote ones last. A grant from a later gate
/// is never taken while an earlier one refuses, so with memory first no cluster permit is held
/// by a task that waits for memory.
///
/// A permit of the chain is revocable (btq::revocable_permit) when one of its parts is: the
/// task's stop is requested when any part is lost. prepare() runs every gate's prepare() in
/// order (a task gets its fencing token from btq::redis_permits as it would alone).
///
/// The chain holds references: the gates must outlive it, and it must outlive its queues.
/// @code
/// btq::memory_gate memory({.min_available_bytes = 512ull << 20});
/// btq::redis_permits cluster({.endpoint = btq::parse_redis_url("redis://10.0.0.5/imports"),
///                             .limit = 16});
/// btq::gate_chain<btq::memory_gate, btq::redis_permits> both(memory, cluster);
/// btq::bounded_task_queue<job, btq::thread_executor,
///                         btq::gate_chain<btq::memory_gate, btq::redis_permits>>
///     queue(both, {.max_concurrency = 4});
/// @endcode
template <start_gate... Gates>
    requires(sizeof...(Gates) >= 1)
class gate_chain {
    static constexpr std::size_t size = sizeof...(Gates);
    using gates_tuple = std::tuple<Gates&...>;

    template <std::size_t I>
    using gate_at = std::tuple_element_t<I, std::tuple<Gates...>>;

    template <std::size_t... I>
    static consteval bool all_but_last_return(std::index_sequence<I...> /*indices*/) {
        return (returns_unstarted<gate_at<I>> && ...);
    }
    static_assert(all_but_last_return(std::make_index_sequence<size - 1>{}),
                  "btq::gate_chain: every gate but the last needs return_unstarted(permit_type&&) "
                  "(btq::returns_unstarted), so that a refusal further on can give its permit "
                  "back without waking a queue");

  public:
    /// @brief One granted start: a permit of every gate. Move-only; destroying it gives every
    ///        part back to its gate.
    class permit_type {
      public:
        /// @brief Takes over `other`'s parts; the moved-from permit releases nothing.
        permit_type(permit_type&&) noexcept = default;
        permit_type& operator=(permit_type&&) = delete;
        permit_type(const permit_type&) = delete;
        permit_type& operator=(const permit_type&) = delete;
        ~permit_type() = default;

        /// @brief The part granted by the `I`th gate.
        template <std::size_t I>
        [[nodiscard]] auto& part() noexcept {
            return std::get<I>(parts_);
        }

        /// @brief btq::revocable_permit, when a part is: requests `source` when any part is
        ///        lost.
        void bind_stop(std::stop_source source)
            requires(revocable_permit<typename Gates::permit_type> || ...)
        {
            std::apply([&](auto&... part) { (bind_one(part, source), ...); }, parts_);
        }

      private:
        friend class gate_chain;
        explicit permit_type(std::tuple<typename Gates::permit_type...>&& parts) noexcept
            : parts_(std::move(parts)) {}

        template <class Part>
        static void bind_one(Part& part, const std::stop_source& source) {
            if constexpr (revocable_permit<Part>) {
                part.bind_stop(source);
            }
        }

        std::tuple<typename Gates::permit_type...> parts_;
    };

    /// @brief The chain of `gates`, asked in this order. Holds references only.
    explicit gate_chain(Gates&... gates) noexcept : gates_(gates...) {}

    gate_chain(const gate_chain&) = delete;
    gate_chain& operator=(const gate_chain&) = delete;
    gate_chain(gate_chain&&) = delete;
    gate_chain& operator=(gate_chain&&) = delete;
    ~gate_chain() = default;

    /// @brief btq::start_gate: asks every gate in order; a permit if all grant. On a refusal
    ///        the permits granted so far go back (return_unstarted), and the queue's demand
    ///        moves to the gate that refused.
    [[nodiscard]] std::optional<permit_type> try_acquire(const start_request& request) {
        std::optional<std::tuple<typename Gates::permit_type...>> parts =
            acquire_from<0>(request, std::tuple<>{});
        if (!parts) {
            return std::nullopt;
        }
        passed_all(request.queue);
        return permit_type(std::move(*parts));
    }

    /// @brief btq::start_gate: attaches the queue to every gate (they wake it directly).
    void attach(start_gate_waker waker) {
        {
            std::lock_guard lock(mutex_);
            queues_.push_back(queue_state{.waker = waker});
        }
        try {
            attach_from<0>(waker);
        } catch (...) {
            std::lock_guard lock(mutex_);
            std::erase_if(queues_, [&](const queue_state& state) { return state.waker == waker; });
            throw;
        }
    }

    /// @brief btq::start_gate: detaches the queue from every gate.
    void detach(start_gate_waker waker) {
        std::apply([&](auto&... gate) { (gate.detach(waker), ...); }, gates_);
        std::lock_guard lock(mutex_);
        if (queue_state* state = find_locked(waker.context);
            state != nullptr && state->blocker < size) {
            count_held_locked(state->blocker, state->held, 0);
        }
        std::erase_if(queues_, [&](const queue_state& state) { return state.waker == waker; });
    }

    /// @brief btq::start_gate (optional): `held` tasks of the queue wait; told to the gate that
    ///        refused that queue's last start (called under the queue's lock).
    void demand(const start_gate_waker& waker, std::size_t held) {
        std::lock_guard lock(mutex_);
        queue_state* state = find_locked(waker.context);
        if (state == nullptr) {
            return;
        }
        const std::size_t before = std::exchange(state->held, held);
        if (state->blocker < size) {
            count_held_locked(state->blocker, before, held);
            tell_demand(state->blocker, waker, told(*state));
        }
    }

    /// @brief btq::start_gate (optional): every gate's prepare(), in order (a throw fails the
    ///        task, as with the gate alone).
    template <class Task>
    void prepare(Task& task, permit_type& permit) {
        prepare_from<0>(task, permit);
    }

    /// @brief The `I`th gate.
    template <std::size_t I>
    [[nodiscard]] auto& gate() noexcept {
        return std::get<I>(gates_);
    }

    /// @brief Tasks held back now by the `index`th gate: the held tasks of every queue whose
    ///        last start that gate refused.
    [[nodiscard]] std::size_t held_by(std::size_t index) const {
        std::lock_guard lock(mutex_);
        return index < size ? held_[index] : 0;
    }

    /// @brief Times a task began to be held back by the `index`th gate, in total (a task held
    ///        by one gate, then by another, counts once for each).
    [[nodiscard]] std::uint64_t holds_total(std::size_t index) const {
        std::lock_guard lock(mutex_);
        return index < size ? holds_total_[index] : 0;
    }

    /// @brief The index of the gate that refused the last start of the queue `queue` (a
    ///        start_request::queue), or the number of gates if none has refused it yet.
    [[nodiscard]] std::size_t blocker_of(const void* queue) const {
        std::lock_guard lock(mutex_);
        for (const queue_state& state : queues_) {
            if (state.waker.context == queue) {
                return state.blocker;
            }
        }
        return size;
    }

  private:
    struct queue_state {
        start_gate_waker waker;
        std::size_t held = 0;          // the queue's last demand()
        std::size_t blocker = size;    // the gate that refused its last start; size: none yet
        std::size_t allowance = 1;     // most held tasks told to a blocker after the first gate
        bool waiting_on_later = false; // that blocker refused a start the gates before it passed
    };

    template <std::size_t I, class... Got>
    std::optional<std::tuple<typename Gates::permit_type...>>
    acquire_from(const start_request& request, std::tuple<Got...>&& got) {
        if constexpr (I == size) {
            return std::optional<std::tuple<typename Gates::permit_type...>>(std::in_place,
                                                                             std::move(got));
        } else {
            std::optional<typename gate_at<I>::permit_type> part =
                std::get<I>(gates_).try_acquire(request);
            if (!part) {
                give_back<0>(got);
                blocked_by(request.queue, I);
                return std::nullopt;
            }
            return acquire_from<I + 1>(
                request, std::tuple_cat(std::move(got), std::make_tuple(std::move(*part))));
        }
    }

    template <std::size_t I, class... Got>
    void give_back(std::tuple<Got...>& got) noexcept {
        if constexpr (I < sizeof...(Got)) {
            std::get<I>(gates_).return_unstarted(std::move(std::get<I>(got)));
            give_back<I + 1>(got);
        }
    }

    // Gate `index` refused the queue's start: the held tasks are now its to count, and its
    // demand. A later gate is told only of the task that passed the gates before it; after each
    // start that passed them all, of nothing until it refuses again, and then of twice as many
    // (up to every task held).
    void blocked_by(const void* queue, std::size_t index) {
        std::lock_guard lock(mutex_);
        queue_state* state = find_locked(queue);
        if (state == nullptr) {
            return;
        }
        if (state->blocker == index) {
            if (index == 0) {
                return; // the first gate is told every held task already
            }
            state->waiting_on_later = true;
            tell_demand(index, state->waker, told(*state));
            return;
        }
        const std::size_t before = std::exchange(state->blocker, index);
        state->allowance = 1;
        state->waiting_on_later = index > 0;
        if (state->held > 0) {
            if (before < size) {
                count_held_locked(before, state->held, 0);
                tell_demand(before, state->waker, 0);
            }
            count_held_locked(index, 0, state->held);
            tell_demand(index, state->waker, told(*state));
        }
    }

    // A start passed every gate: a later blocker is told nothing more until it refuses again
    // (the next start may not pass the gates before it), and then twice as many as before.
    void passed_all(const void* queue) {
        std::lock_guard lock(mutex_);
        queue_state* state = find_locked(queue);
        if (state != nullptr && state->blocker > 0 && state->blocker < size &&
            state->waiting_on_later) {
            state->waiting_on_later = false;
            state->allowance =
                std::min(state->allowance * 2, std::max<std::size_t>(state->held, 1));
            tell_demand(state->blocker, state->waker, told(*state));
        }
    }

    // What the blocker of `state` is told: every held task for the first gate; for a later one,
    // at most the allowance while it holds a start that passed the gates before it.
    static std::size_t told(const queue_state& state) noexcept {
        if (state.blocker == 0) {
            return state.held;
        }
        return state.waiting_on_later ? std::min(state.held, state.allowance) : 0;
    }

    void count_held_locked(std::size_t index, std::size_t before, std::size_t after) noexcept {
        held_[index] = held_[index] + after - before;
        if (after > before) {
            holds_total_[index] += after - before;
        }
    }

    void tell_demand(std::size_t index, const start_gate_waker& waker, std::size_t held) {
        tell_demand_from<0>(index, waker, held);
    }

    template <std::size_t I>
    void tell_demand_from(std::size_t index, const start_gate_waker& waker, std::size_t held) {
        if constexpr (I < size) {
            if (I == index) {
                if constexpr (requires(gate_at<I>& gate) { gate.demand(waker, held); }) {
                    std::get<I>(gates_).demand(waker, held);
                }
                return;
            }
            tell_demand_from<I + 1>(index, waker, held);
        }
    }

    template <std::size_t I>
    void attach_from(start_gate_waker waker) {
        if constexpr (I < size) {
            std::get<I>(gates_).attach(waker);
            try {
                attach_from<I + 1>(waker);
            } catch (...) {
                std::get<I>(gates_).detach(waker);
                throw;
            }
        }
    }

    template <std::size_t I, class Task>
    void prepare_from(Task& task, permit_type& permit) {
        if constexpr (I < size) {
            if constexpr (requires(gate_at<I>& gate) {
                              gate.prepare(task, permit.template part<I>());
                          }) {
                std::get<I>(gates_).prepare(task, permit.template part<I>());
            }
            prepare_from<I + 1>(task, permit);
        }
    }

    queue_state* find_locked(const void* queue) noexcept {
        for (queue_state& state : queues_) {
            if (state.waker.context == queue) {
                return &state;
            }
        }
        return nullptr;
    }

    gates_tuple gates_;
    mutable std::mutex mutex_; // queues_
    std::vector<queue_state> queues_;
    std::array<std::size_t, size> held_{};
    std::array<std::uint64_t, size> holds_total_{};
};

} // namespace btq
