/// @file start_gate.hpp
/// @brief The start-gate concept: what a bounded_task_queue asks before a waiting task starts
///        (btq::memory_gate: "is there memory for it?"; a cluster-wide permit pool: "is there a
///        permit for it?"), the permit a granted start holds until its task ends, and the waker
///        through which a gate tells the queue to ask again.
///
/// A queue takes its gate as its third template parameter and the gate object in its
/// constructor:
/// @code
/// btq::memory_gate memory({.min_available_bytes = 512ull << 20});
/// btq::bounded_task_queue<job, btq::thread_executor, btq::memory_gate> queue(
///     memory, {.max_concurrency = 4, .capacity = 100});
/// @endcode
/// The default, btq::no_gate, is recognised at compile time and costs nothing: no member, no
/// branch, no atomic on any path.
#pragma once

#include <concepts>
#include <cstddef>
#include <optional>
#include <stop_token>
#include <type_traits>

namespace btq {

/// @brief What a queue tells its gate when it asks to start one task.
struct start_request {
    int priority = 0;            ///< the priority of the task that would start
    std::size_t running = 0;     ///< tasks of this queue running now (holding its permits)
    std::size_t waiting = 0;     ///< tasks of this queue waiting now, this one included
    const void* queue = nullptr; ///< the asking queue, the same as its waker's `context`
};

/// @brief How a gate tells a queue that a start it refused may now succeed. Copyable, two
///        pointers; equal wakers name the same queue.
///
/// Calling it makes the queue ask the gate again, on the calling thread, for as many tasks as
/// it has free slots (it may dispatch them there: with an executor that runs tasks
/// synchronously, they run on the caller's thread). It may be called from any thread, any
/// number of times, spuriously too, and never blocks on anything but the queue's lock, with
/// two rules:
/// - never from inside try_acquire() or demand() (the queue holds its lock there);
/// - never while holding a lock that try_acquire() or demand() takes.
///
/// A permit's destructor may call it (the queue never destroys a permit under its lock). No
/// wake-up is lost as long as the gate calls it after the change that lets try_acquire()
/// succeed: the refusal and the retry it causes are ordered by the queue's lock.
struct start_gate_waker {
    /// The queue's wake-up function; called with `context`.
    void (*wake)(void* context) noexcept = nullptr;
    /// The queue (also start_request::queue of its requests).
    void* context = nullptr;

    /// @brief Makes the queue ask the gate again.
    void operator()() const noexcept { wake(context); }
    /// @brief Equal when both wake the same queue the same way.
    friend bool operator==(const start_gate_waker&, const start_gate_waker&) = default;
};

/// @brief A gate that may refuse to start a task and say later when to ask again.
///
/// Members, and who calls them:
/// - `typename G::permit_type`: a move-only object standing for one granted start (a memory
///   admission, a lease). The queue keeps it with the task from its start until the task
///   ends, whatever the ending (success, exception, run timeout - when the task really
///   returns, as for its slot -, cancellation while running, a running task outliving
///   clear()), and then destroys it, exactly once: destruction is
///   the release. Its move constructor and destructor must not throw; a moved-from permit
///   releases nothing (the queue may destroy one under its lock). It need not be assignable.
/// - `try_acquire(const start_request&) -> std::optional<permit_type>`: called by a queue
///   under its lock, on any thread, for the task that would start next (highest priority,
///   FIFO within a priority). It must not block (an asynchronous gate answers from what it
///   already holds and starts fetching more), must not throw (a throw is taken as a refusal),
///   and must not call the queue or a waker. Empty: the task stays waiting, in its place;
///   nothing of its queue starts before it, and the queue asks again when woken (and
///   whenever it would start a task anyway: a submit, a task's end, resume()).
/// - `attach(start_gate_waker)`: called once by each queue's constructor; `detach(waker)` by
///   its destructor. After detach() returns the gate never calls that waker again and no call
///   of it is still running on another thread. A gate may serve many queues at once.
///
/// Optional members, found by the queue at compile time:
/// - `demand(const start_gate_waker& queue, std::size_t held)`: the number of tasks of that
///   queue held back by the gate changed to `held` (called under the queue's lock: must not
///   block or call the queue). An asynchronous gate uses it to fetch permits ahead.
/// - `prepare(Task& task, permit_type& permit)`: called just before the task is handed to the
///   executor, without the queue's lock, so a gate can give the task what its permit carries
///   (a fencing token, say).
/// - a permit with `bind_stop(std::stop_source)` (btq::revocable_permit) can be lost while its
///   task runs: the queue hands it the running task's own stop source right after the start,
///   and the permit requests stop when the lease is lost.
///
/// @code
/// struct one_at_a_time {
///     struct permit_type { /* move-only; ~permit_type() gives the start back and wakes */ };
///     std::optional<permit_type> try_acquire(const btq::start_request&);
///     void attach(btq::start_gate_waker waker);
///     void detach(btq::start_gate_waker waker);
/// };
/// static_assert(btq::start_gate<one_at_a_time>);
/// @endcode
template <class G>
concept start_gate = std::move_constructible<typename G::permit_type> &&
                     std::destructible<typename G::permit_type> &&
                     requires(G& gate, const start_request& request, start_gate_waker waker) {
                         {
                             gate.try_acquire(request)
                         } -> std::same_as<std::optional<typename G::permit_type>>;
                         gate.attach(waker);
                         gate.detach(waker);
                     };

/// @brief A permit that can be lost while its task runs (a lease that expired): the queue
///        calls `bind_stop(source)` with the task's own stop source (under the queue's lock,
///        right after the start; must not block), and the permit requests stop on it when the
///        lease is lost, from any thread. The task sees its stop token requested
///        (completion::stop_token()), as for a run timeout. A queue whose gate has such permits
///        gives every task its own stop source, so plain tasks take the locked path.
template <class Permit>
concept revocable_permit =
    requires(Permit& permit, std::stop_source source) { permit.bind_stop(source); };

/// @brief The default gate: every start is granted. bounded_task_queue recognises it and leaves
///        the gate out entirely (no member, no call, no atomic).
struct no_gate {
    /// @brief The permit of a start nobody gates.
    struct permit_type {};
    /// @brief Always grants.
    [[nodiscard]] static std::optional<permit_type> try_acquire(const start_request& /*request*/) {
        return permit_type{};
    }
    /// @brief Nothing to wake.
    static void attach(start_gate_waker /*waker*/) noexcept {}
    /// @brief Nothing to forget.
    static void detach(start_gate_waker /*waker*/) noexcept {}
};

static_assert(start_gate<no_gate>);

} // namespace btq
