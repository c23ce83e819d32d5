/// @file gates/gate_chain.hpp
/// @brief gate_chain: one start gate (btq::start_gate) made of several, asked in order: a
///        task starts only when every gate of the chain grants it, and gives every permit back
///        when it ends. The usual chain is memory first, then the cluster-wide permits:
///        `btq::gate_chain<btq::memory_gate, btq::redis_permits>`.
#pragma once

#include <algorithm>
#include <cstddef>
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
/// cluster-wide lease.
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
        state->held = held;
        if (state->blocker < size) {
            tell_demand(state->blocker, waker, held);
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
        std::size_t held = 0;       // the queue's last demand()
        std::size_t blocker = size; // the gate that refused its last start; size: none yet
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

    // The queue's held tasks are now held by gate `index`: move its demand there.
    void blocked_by(const void* queue, std::size_t index) {
        std::lock_guard lock(mutex_);
        queue_state* state = find_locked(queue);
        if (state == nullptr || state->blocker == index) {
            return;
        }
        const std::size_t before = std::exchange(state->blocker, index);
        if (state->held > 0) {
            if (before < size) {
                tell_demand(before, state->waker, 0);
            }
            tell_demand(index, state->waker, state->held);
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
};

} // namespace btq
