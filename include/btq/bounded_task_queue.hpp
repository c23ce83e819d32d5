/// @file bounded_task_queue.hpp
/// @brief bounded_task_queue: at most `max_concurrency` tasks run, at most `capacity` wait, and
///        every caller gets an answer.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <future>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "detail/adaptive_mutex.hpp"
#include "detail/deadline_timer.hpp"
#include "detail/dispatch_frame.hpp"
#include "detail/inbox.hpp"
#include "detail/node_pool.hpp"
#include "detail/queue_counters.hpp"
#include "detail/task_node.hpp"
#include "detail/tick_clock.hpp"
#include "detail/token_bucket.hpp"
#include "detail/waiting_list.hpp"
#include "errors.hpp"
#include "executor.hpp"
#include "executors/thread_executor.hpp"
#include "observer.hpp"
#include "options.hpp"
#include "start_gate.hpp"
#include "stats.hpp"

namespace btq {

/// @brief What shutdown() did.
struct shutdown_result {
    std::size_t cleared = 0; ///< waiters answered with queue_cleared
    bool drained = false;    ///< every running task finished within the timeout
};

/// @brief A callback a queue can answer a task through: called once with its task_result.
template <class Callback, class R>
concept completion_callback = std::invocable<std::decay_t<Callback>&, task_result<R>&&>;

/// @brief A queue that bounds both how many tasks run at once (`max_concurrency`) and how many
///        may wait (`capacity`), and hands tasks to a pluggable executor.
///
/// The queue decides *when* a task starts; the executor decides *how* it runs
/// (thread_executor, callable_executor, and the process executors).
///
/// Guarantees:
/// - Never more than `max_concurrency` tasks inside the executor, never more than `capacity`
///   waiting.
/// - Every admitted task is answered exactly once: with its outcome, or with an error derived
///   from btq::task_not_run if it never started. Nothing throws after a task is admitted.
/// - Higher priority starts first, FIFO within a priority; a task past its queue deadline never
///   starts; a task whose stop token is requested while it waits never starts.
/// - Results are delivered (future made ready, callback run) before the task's slot is freed, so
///   once drain() returns every admitted task has been answered.
///
/// How a task travels: a plain task (priority 0, no deadline, no stop token, no run timeout)
/// is pushed onto a lock-free inbox and costs its submitter no lock while every slot is busy;
/// the thread that frees a slot takes the next task under the queue's lock, which also guards
/// every count. A task with any of those features is admitted under the lock into the waiting
/// list, where its deadline, cancellation and priority are followed.
///
/// @par Thread safety
/// Every member may be called from any thread at once, including from inside a task or a
/// callback, except: drain() and shutdown() from the queue's own tasks or callbacks (they would
/// wait for themselves, so they throw btq::wait_deadlock), and the destructor, which must not
/// race any other call.
///
/// @code
/// btq::bounded_task_queue<std::function<int()>> queue({.max_concurrency = 4, .capacity = 100});
/// std::future<int> answer = queue.submit([] { return 6 * 7; });
/// queue.submit([] { return 1; }, [](btq::task_result<int> r) noexcept { /* r.value() */ });
/// auto result = queue.shutdown("done", std::chrono::seconds(5));
/// @endcode
///
/// @par Start gates
/// With a `Gate` (btq::start_gate, e.g. btq::memory_gate), a waiting task also needs the gate's
/// permit to start: a refused task keeps its place (priority, FIFO, deadlines, stop tokens and
/// clear() apply as usual), nothing of the queue starts before it, and the queue asks again when
/// the gate wakes it. The permit is kept with the task until it ends, whatever the ending.
///
/// @tparam Task     what is submitted (moved into the queue, then into the executor)
/// @tparam Executor how a task runs; must satisfy btq::executor_for<Executor, Task>
/// @tparam Gate     what a waiting task must pass to start (btq::start_gate); the default,
///                  btq::no_gate, is left out entirely
template <class Task, class Executor = thread_executor, class Gate = no_gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
class bounded_task_queue {
  public:
    using task_type = Task;         ///< what submit() takes
    using executor_type = Executor; ///< what runs the tasks
    /// What a waiting task must pass to start (btq::no_gate: nothing).
    using gate_type = Gate;
    /// What a task produces: futures are `std::future<result_type>`.
    using result_type = executor_result_t<Executor, Task>;
    /// What a started task holds from its gate until it ends (see btq::start_gate).
    using permit_type = typename Gate::permit_type;
    /// True unless the gate is btq::no_gate.
    static constexpr bool gated = !std::same_as<Gate, no_gate>;

    /// @brief Creates the queue and its executor from `executor_args`. With no arguments, an
    ///        executor that can be sized (thread_executor) gets `max_concurrency` threads.
    /// @throws std::invalid_argument if `options.max_concurrency` is 0.
    /// @code
    /// btq::bounded_task_queue<job, btq::callable_executor<handler>> queue(
    ///     {.max_concurrency = 2, .capacity = 8}, btq::callable_executor(handler{}));
    /// @endcode
    template <class... ExecutorArgs>
        requires(!gated)
    explicit bounded_task_queue(queue_options options = {}, ExecutorArgs&&... executor_args)
        : bounded_task_queue(std::in_place, nullptr, options,
                             std::forward<ExecutorArgs>(executor_args)...) {}

    /// @brief Creates a queue whose tasks start only with a permit of `gate` (see
    ///        btq::start_gate); otherwise as the constructor above. The queue attaches itself
    ///        to the gate here and detaches in its destructor.
    /// @warning `gate` must outlive the queue (it is referenced, not copied: one gate may serve
    ///          several queues).
    /// @code
    /// btq::memory_gate memory({.min_available_bytes = 256ull << 20});
    /// btq::bounded_task_queue<btq::command, btq::subprocess_executor, btq::memory_gate> queue(
    ///     memory, {.max_concurrency = 4});
    /// @endcode
    template <class... ExecutorArgs>
        requires gated
    explicit bounded_task_queue(Gate& gate, queue_options options = {},
                                ExecutorArgs&&... executor_args)
        : bounded_task_queue(std::in_place, &gate, options,
                             std::forward<ExecutorArgs>(executor_args)...) {
        gate_->attach(waker());
    }

  private:
    template <class... ExecutorArgs>
    bounded_task_queue(std::in_place_t /*tag*/, Gate* gate, queue_options options,
                       ExecutorArgs&&... executor_args)
        : capacity_(options.capacity), overflow_(options.overflow),
          block_timeout_(options.block_timeout), queue_timeout_(options.queue_timeout),
          run_timeout_(options.run_timeout), gate_(make_gate_pointer(gate)),
          observer_(std::move(options.observer)),
          max_concurrency_(checked_concurrency(options.max_concurrency)),
          paused_(options.start_paused), rate_(make_bucket(options.rate)),
          keys_(options.max_per_key, options.capacity_per_key),
          executor_(make_executor(options, std::forward<ExecutorArgs>(executor_args)...)) {
        if (capacity_ >= closed_bit) {
            throw std::invalid_argument("btq: capacity is too large");
        }
        if constexpr (pulling_executor<Executor>) {
            executor_.attach_source(detail::task_source{
                [](void* self) { return static_cast<bounded_task_queue*>(self)->start_waiting(); },
                [](const void* self) noexcept {
                    const auto* queue = static_cast<const bounded_task_queue*>(self);
                    return queue->waiting_count() > 0 && queue->slot_free();
                },
                this});
        }
    }

  public:
    bounded_task_queue(const bounded_task_queue&) = delete;
    bounded_task_queue& operator=(const bounded_task_queue&) = delete;
    bounded_task_queue(bounded_task_queue&&) = delete;
    bounded_task_queue& operator=(bounded_task_queue&&) = delete;

    /// @brief Closes the queue, answers every waiter with queue_cleared("queue destroyed"), and
    ///        waits for the tasks already running (it never waits for waiting tasks). With an
    ///        executor that can cancel (btq::cancellable_executor, e.g. subprocess_executor),
    ///        the running tasks are cancelled first, so the wait is short.
    /// @warning Do not destroy a queue from inside one of its own tasks.
    ~bounded_task_queue() {
        close();
        static_cast<void>(clear("queue destroyed"));
        if constexpr (gated) {
            gate_->detach(waker()); // running tasks still give their permits back as they end
        }
        if constexpr (cancellable_executor<Executor>) {
            executor_.cancel_running();
        }
        wait_idle();
        {
            std::lock_guard lock(mutex_);
            timer_.stop();
        }
        timer_.join();
    }

    // ---- submission ---------------------------------------------------------------------

    /// @brief Submits a task; its outcome arrives through the returned future.
    /// @throws queue_full     the queue is full (reject; drop_oldest with every waiter more
    ///                        important; block after block_timeout)
    /// @throws queue_closed   close() or shutdown() was called
    /// @throws task_expired   the task's deadline passed before it could be admitted
    /// @throws task_cancelled `options.stop` was already requested
    /// @code
    /// std::future<int> f = queue.submit([] { return 42; }, {.priority = 5});
    /// @endcode
    [[nodiscard]] std::future<result_type> submit(Task task, const submit_options& options = {}) {
        promise_sink sink;
        std::future<result_type> future = sink.promise.get_future();
        throw_if_refused(observed(admit(task, std::move(sink), options, true), options));
        return future;
    }

    /// @brief Submits a task; `callback(task_result<R>)` is called exactly once with its outcome,
    ///        on the thread that completes it (or the one that clears, expires, cancels or
    ///        displaces it). If submit throws, the callback is never called.
    /// @note The callback runs while the task still holds its slot: keep it short. It must not
    ///       throw (an escaping exception calls std::terminate, as for std::stop_callback).
    /// @throws the same as the future form.
    /// @code
    /// queue.submit(task, [](btq::task_result<int> r) noexcept { if (r) total += *r; });
    /// @endcode
    template <completion_callback<result_type> Callback>
    void submit(Task task, Callback&& callback, const submit_options& options = {}) {
        throw_if_refused(
            observed(admit(task, std::forward<Callback>(callback), options, true), options));
    }

    /// @brief Submits without ever blocking or throwing for a full or closed queue. Under
    ///        overflow_policy::block it behaves as reject; under drop_oldest it may displace.
    /// @return the future, or nothing if the task was not admitted; then `task` is left
    ///         untouched (not moved from), so the caller can retry or run it elsewhere.
    /// @code
    /// if (auto f = queue.try_submit(std::move(task))) use(f->get()); else run_inline(task);
    /// @endcode
    [[nodiscard]] std::optional<std::future<result_type>>
    try_submit(Task&& task, const submit_options& options = {}) {
        if (fast_refusal(options)) {
            static_cast<void>(observed(admission::refused_full, options));
            return std::nullopt;
        }
        promise_sink sink;
        std::future<result_type> future = sink.promise.get_future();
        if (!admitted(observed(admit(task, std::move(sink), options, false), options))) {
            return std::nullopt;
        }
        return future;
    }

    /// @brief Callback form of try_submit(). Returns false, leaving both `task` and `callback`
    ///        untouched, if the task was not admitted.
    template <completion_callback<result_type> Callback>
    [[nodiscard]] bool try_submit(Task&& task, Callback&& callback,
                                  const submit_options& options = {}) {
        if (fast_refusal(options)) {
            static_cast<void>(observed(admission::refused_full, options));
            return false;
        }
        return admitted(
            observed(admit(task, std::forward<Callback>(callback), options, false), options));
    }

    // ---- lifecycle ----------------------------------------------------------------------

    /// @brief Stops admission: later submits throw queue_closed (try_submit returns nothing),
    ///        blocked submitters wake and throw queue_closed. Waiting and running tasks go on.
    void close() noexcept;

    /// @brief Fails every waiting task with queue_cleared carrying `reason`; running tasks are
    ///        left alone. Does not close the queue (on a closed queue it also answers the tasks
    ///        whose submit() is still returning).
    /// @return how many waiting tasks were answered.
    /// @code
    /// std::size_t cleared = queue.clear("Server shutting down");
    /// @endcode
    std::size_t clear(const std::string& reason = "cleared");

    /// @brief Waits until nothing runs and nothing waits, for at most `timeout`. Does not close
    ///        the queue, so under steady submission it may never see idle.
    /// @return true if the queue was idle before the timeout.
    /// @throws wait_deadlock if called from one of the queue's own tasks or callbacks.
    [[nodiscard]] bool drain(clock::duration timeout);

    /// @brief Waits, without limit, until nothing runs and nothing waits.
    /// @throws wait_deadlock if called from one of the queue's own tasks or callbacks.
    void drain() {
        throw_if_inside();
        wait_idle();
    }

    /// @brief Waits until fewer than `size` tasks wait (running ones do not count), as
    ///        p-queue's `onSizeLessThan`: for a producer that throttles itself instead of
    ///        overflow_policy::block. Returns at once if that is already so.
    /// @throws std::invalid_argument if `size` is 0 (nothing is ever fewer than none).
    /// @throws wait_deadlock if called from one of the queue's own tasks or callbacks.
    /// @code
    /// for (auto& job : jobs) {
    ///     queue.wait_until_size_below(100); // keep at most 100 waiting
    ///     queue.submit(std::move(job), on_done);
    /// }
    /// @endcode
    void wait_until_size_below(std::size_t size) {
        static_cast<void>(wait_for_size(size, std::nullopt));
    }

    /// @brief As wait_until_size_below(size), for at most `timeout`.
    /// @return true if fewer than `size` tasks waited before the timeout.
    [[nodiscard]] bool wait_until_size_below(std::size_t size, clock::duration timeout) {
        return wait_for_size(size, clock::now() + timeout);
    }

    /// @brief Waits until no task waits (some may still run: drain() waits for those too), as
    ///        p-queue's `onEmpty`. Same as wait_until_size_below(1).
    void wait_until_empty() { wait_until_size_below(1); }

    /// @brief As wait_until_empty(), for at most `timeout`.
    /// @return true if no task waited before the timeout.
    [[nodiscard]] bool wait_until_empty(clock::duration timeout) {
        return wait_until_size_below(1, timeout);
    }

    /// @brief close() + clear(reason) + drain(timeout): refuse new work, answer every waiter,
    ///        and wait for the running tasks (without limit if `timeout` is empty).
    /// @throws wait_deadlock if called from one of the queue's own tasks or callbacks (before
    ///         doing anything).
    /// @code
    /// auto done = queue.shutdown("Server shutting down", std::chrono::seconds(10));
    /// log("cleared {} waiting, drained: {}", done.cleared, done.drained);
    /// @endcode
    shutdown_result shutdown(const std::string& reason = "shutting down",
                             std::optional<clock::duration> timeout = std::nullopt);

    /// @brief Changes the running bound. Raising it starts waiting tasks at once; lowering it
    ///        lets running tasks finish (nothing is interrupted) and starts no more until the
    ///        count is below the new bound.
    /// @throws std::invalid_argument if `max_concurrency` is 0 (use pause() to stop starting).
    void set_max_concurrency(std::size_t max_concurrency);

    /// @brief Stops starting tasks; admission, expiry, cancellation and running tasks go on.
    void pause() noexcept;

    /// @brief Starts waiting tasks again after pause().
    void resume();

    // ---- observation --------------------------------------------------------------------

    /// @brief A consistent snapshot of counters, bounds and latencies (see queue_stats). Taken
    ///        under the lock that every start, finish and unstarted answer takes, with the
    ///        number waiting read once inside it: every task is in exactly one state.
    [[nodiscard]] queue_stats stats() const {
        return stats_with([](queue_stats& /*filled*/) {});
    }

  private:
    template <class More>
    queue_stats stats_with(More more) const;
    static void add_waiting_at_zero(std::vector<priority_count>& counts, std::size_t waiting);

  public:
    /// @brief Gives every waiting task submitted with `id` (submit_options::id) the priority
    ///        `priority`. Each takes the place its submission gives it among the tasks of its
    ///        new priority (and key), as if it had been submitted with it; its deadline, stop
    ///        token and key stay. A task that already started, or was answered, is unaffected.
    /// @return how many waiting tasks were moved (0: none waits with that id).
    /// @code
    /// queue.submit(task, {.id = 42});
    /// if (queue.set_priority(42, 10) == 0) { /* already started */ }
    /// @endcode
    std::size_t set_priority(std::uint64_t id, int priority);

    /// @brief stats(), and also the waiting tasks per priority and the `top_keys` busiest keys
    ///        (queue_stats::waiting_by_priority, queue_stats::keys), from the same instant. It
    ///        walks the waiting tasks: for a look now and then, not for every request.
    /// @code
    /// for (const btq::key_stats& key : queue.stats(5).keys) {
    ///     std::cout << key.key.to_string() << ": " << key.running << " running\n";
    /// }
    /// @endcode
    [[nodiscard]] queue_stats stats(std::size_t top_keys) const;

    /// @brief The running bound now.
    [[nodiscard]] std::size_t max_concurrency() const noexcept {
        return max_concurrency_.load(std::memory_order_relaxed);
    }
    /// @brief The waiting bound.
    [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
    /// @brief True once close() or shutdown() has been called.
    [[nodiscard]] bool is_closed() const noexcept {
        return (admission_.load(std::memory_order_acquire) & closed_bit) != 0;
    }
    /// @brief The executor the queue owns.
    [[nodiscard]] Executor& executor() noexcept { return executor_; }
    /// @brief The gate the queue asks before a task starts (only for a gated queue).
    [[nodiscard]] Gate& gate() noexcept
        requires gated
    {
        return *gate_;
    }

  private:
    enum class admission {
        started,
        queued,
        refused_full,
        refused_closed,
        refused_expired,
        refused_cancelled
    };

    /// A permit's task can lose it while running: every task gets its own stop source.
    static constexpr bool revocable = gated && revocable_permit<permit_type>;
    /// What every node of this queue is: a plain queue_node, or one with room for its permit.
    using node_base =
        std::conditional_t<gated, detail::permit_node<permit_type>, detail::queue_node>;
    struct no_gate_pointer {};
    using gate_pointer = std::conditional_t<gated, Gate*, no_gate_pointer>;
    static gate_pointer make_gate_pointer([[maybe_unused]] Gate* gate) noexcept {
        if constexpr (gated) {
            return gate;
        } else {
            return {};
        }
    }

    using node_state = detail::node_state;
    using timer_entry = detail::timer_entry;
    using task_extras = detail::task_extras<bounded_task_queue>;
    using promise_sink = detail::promise_sink<result_type>;
    template <class Sink>
    using task_node = detail::task_node<bounded_task_queue, Sink>;
    template <class Queue, class Sink>
    friend struct detail::task_node;
    friend struct detail::stop_hook<bounded_task_queue>;

    static task_extras* extras_of(const detail::queue_node* node) noexcept {
        return static_cast<task_extras*>(node->extras);
    }

    /// The node whose stop callback this thread is registering (under the lock): a callback
    /// invoked inline by that registration must not take the lock again.
    static inline thread_local const detail::queue_node* registering_stop_ = nullptr;

    static constexpr std::size_t closed_bit = std::size_t{1} << (sizeof(std::size_t) * 8 - 1);

    static std::size_t checked_concurrency(std::size_t max_concurrency) {
        if (max_concurrency == 0) {
            throw std::invalid_argument("btq: max_concurrency must be at least 1");
        }
        return max_concurrency;
    }

    template <class... ExecutorArgs>
    static Executor make_executor(const queue_options& options, ExecutorArgs&&... executor_args) {
        if constexpr (sizeof...(ExecutorArgs) == 0 && concurrency_aware_executor<Executor> &&
                      std::constructible_from<Executor, std::size_t>) {
            return Executor(options.max_concurrency);
        } else {
            return Executor(std::forward<ExecutorArgs>(executor_args)...);
        }
    }

    /// Tells the observer, if any, how admission went.
    admission observed(admission outcome, const submit_options& options) const noexcept;
    static task_info info_of(const detail::queue_node* node) noexcept {
        return task_info{.priority = node->priority, .weight = node->weight};
    }

    static bool admitted(admission outcome) noexcept {
        return outcome == admission::started || outcome == admission::queued;
    }

    static void throw_if_refused(admission outcome) {
        switch (outcome) {
        case admission::refused_full:
            throw queue_full();
        case admission::refused_closed:
            throw queue_closed();
        case admission::refused_expired:
            throw task_expired();
        case admission::refused_cancelled:
            throw task_cancelled();
        default:
            return;
        }
    }

    [[nodiscard]] bool is_plain(const submit_options& options) const noexcept {
        return options.priority == 0 && !options.deadline && !queue_timeout_ &&
               !options.stop.stop_possible() && !options.run_timeout && !run_timeout_ &&
               options.weight == 1 && options.key.empty() && options.id == 0 && !options.retry &&
               !revocable;
    }

    static std::optional<detail::token_bucket> make_bucket(const std::optional<rate_limit>& rate) {
        if (!rate) {
            return std::nullopt;
        }
        return detail::token_bucket(*rate);
    }

    /// A weight the queue can ever start (submit_options::weight).
    void check_weight(std::size_t weight) const;

    /// The weight a task of `weight` takes when it starts now: never more than the whole bound.
    [[nodiscard]] std::size_t effective_weight(std::size_t weight) const noexcept {
        return std::min(weight, max_concurrency_.load(std::memory_order_relaxed));
    }

    /// Slots (and a rate token) are there for a task of `weight` to start now; the gate aside.
    [[nodiscard]] bool may_start_locked(std::size_t weight, std::uint64_t now) const noexcept {
        return !paused_.load(std::memory_order_relaxed) &&
               counters_.active_weight + effective_weight(weight) <=
                   max_concurrency_.load(std::memory_order_relaxed) &&
               (!rate_ || rate_->ready(now));
    }

    [[nodiscard]] auto eligible() const noexcept {
        return [this](const detail::key_lane& lane) { return keys_.eligible(lane); };
    }
    /// A task leaves the waiting tasks (it starts, or is answered unstarted): its key's and its
    /// id's records follow.
    void leave_waiting_locked(detail::queue_node* node, bool starts) noexcept {
        if (node->extras != nullptr) {
            keys_.leave_waiting(*node->extras, starts);
            if (node->extras->id != 0) {
                forget_id_locked(node);
            }
        }
    }
    void forget_id_locked(detail::queue_node* node) noexcept {
        auto [first, last] = ids_.equal_range(node->extras->id);
        for (; first != last; ++first) {
            if (first->second == node) {
                ids_.erase(first);
                return;
            }
        }
    }

    void notify_size_locked() noexcept {
        if (size_waiters_ > 0) {
            size_dropped_.notify_all();
        }
    }

    [[nodiscard]] std::size_t waiting_count() const noexcept {
        return admission_.load(std::memory_order_seq_cst) & ~closed_bit;
    }

    [[nodiscard]] bool slot_free() const noexcept {
        return !paused_.load(std::memory_order_seq_cst) &&
               active_.load(std::memory_order_seq_cst) <
                   max_concurrency_.load(std::memory_order_seq_cst);
    }

    /// try_submit's refusal of a plain task on a full reject queue, decided from two loads: no
    /// lock, nothing built, nothing moved.
    [[nodiscard]] bool fast_refusal(const submit_options& options) noexcept;

    /// Reserves a waiting place, lock-free.
    enum class reservation { made, full, closed };
    reservation reserve() noexcept;

    void note_peak(std::size_t waiting) noexcept {
        std::size_t peak = peak_queued_.load(std::memory_order_relaxed);
        while (waiting > peak &&
               !peak_queued_.compare_exchange_weak(peak, waiting, std::memory_order_relaxed)) {
        }
    }

    /// A waiting place is given back (under the lock): one fewer waits, so the producers in
    /// wait_until_size_below() look again.
    void unreserve_locked() noexcept {
        admission_.fetch_sub(1, std::memory_order_seq_cst);
        notify_size_locked();
    }
    /// An admitted task leaves unstarted, to be answered outside the lock; `outcome` is the
    /// counter of how (expired, cancelled).
    void leave_unstarted_locked(std::uint64_t& outcome) noexcept {
        unreserve_locked();
        ++outcome;
        ++counters_.total_queued;
        ++answering_;
    }

    // Defined in impl/admission.hpp, in the order a task travels.
    /// Decides a task's fate. `task` and `sink` are moved from only if it is admitted (or, for
    /// submit(), whatever happens).
    template <class Sink>
    admission admit(Task& task, Sink&& sink, const submit_options& options, bool may_block);

    /// A plain task on a queue where nothing waits and a slot is free starts on this thread,
    /// without a place in the queue. False (nothing moved) if that is no longer so.
    template <class Sink>
    bool start_at_once(Task& task, Sink& sink);

    /// The lock-free path: the place is reserved; build, push, and start if a slot is free.
    template <class Sink>
    admission push_plain(Task& task, Sink&& sink);
    /// After a task joined the waiting ones: start what may start, unless an idle worker of a
    /// pulling executor is about to take it anyway.
    void start_if_slot_free();

    /// Everything that is not a plain task with room: featured tasks, and full queues.
    template <class Sink>
    admission admit_locked(Task& task, Sink&& sink, const submit_options& options, bool may_block);
    /// Builds the node of a task that goes through admit_locked().
    template <class Sink>
    std::unique_ptr<task_node<std::decay_t<Sink>>>
    make_node(Task& task, Sink&& sink, const submit_options& options,
              std::optional<clock::time_point> deadline);
    /// Admits `node` into the waiting list (the place is reserved). False if its stop token was
    /// requested meanwhile: then it is in `cancelled`, to be answered. `found`: the record of
    /// `key` if the caller looked it up under this same hold of the lock.
    bool enqueue_locked(detail::queue_node* node, const task_key& key,
                        detail::node_chain& cancelled, detail::key_record* found = nullptr);
    /// Registers a featured node's stop callback (under the lock). False if it was already
    /// stopped.
    bool watch_stop_locked(detail::queue_node* node);
    /// drop_oldest: takes the waiter `newcomer_priority` may displace into `displaced`.
    bool displace_locked(int newcomer_priority, detail::node_chain& displaced);

    // Defined in impl/dispatch.hpp, in the order a task travels.
    /// Starts waiting tasks on this thread while slots are free; false if none could start.
    bool start_waiting();
    void run_dispatch(detail::queue_node* first, std::chrono::nanoseconds waited, bool more);
    /// Takes the next task that may start now, answering stale ones into `expired`. Sets
    /// `more` when yet another task could start after this one.
    detail::queue_node* take_startable_locked(std::uint64_t now, detail::node_chain& expired,
                                              bool& more, std::chrono::nanoseconds& waited);
    /// The first in line waits for the rate limit's next token (queue_options::rate).
    void hold_for_rate_locked(detail::queue_node* node, std::uint64_t now);
    /// The rate timer fired: start what may start now (without the lock).
    void start_on_timer() noexcept;
    /// Takes a slot for `node`, which starts now (it is running from here on).
    void begin_running_locked(detail::queue_node* node);
    template <class Node>
    void finish(Node* node, bool failed, bool timed_out) noexcept;
    // Retries (defined in impl/retry.hpp).
    /// A failed attempt of a task with a retry policy is to be tried again.
    bool retry_wanted(const task_extras& extras, const std::exception_ptr& error) const noexcept;
    static clock::duration backoff_after(const retry_policy& policy, std::uint32_t attempt);
    template <class Node>
    void retry_later(Node* node) noexcept;
    bool retry_due_locked(detail::queue_node* node);
    /// A retry policy the queue can follow (submit_options::retry).
    static void check_retry(const retry_policy& policy);

    /// What a finishing task holds from its gate until its slot is free (nothing without one).
    using permit_holder = std::conditional_t<gated, std::optional<permit_type>, char>;
    template <class UnderLock>
    void release_slot(std::size_t weight, std::uint64_t now, permit_holder& permit,
                      UnderLock under_lock) noexcept;
    void take_all_waiting_locked(detail::node_chain& out);
    void forget_locked(detail::queue_node* node) noexcept;
    void drain_inbox_locked();
    void on_stop_requested(detail::queue_node* node) noexcept;
    void on_timer_due(std::unique_lock<detail::adaptive_mutex>& lock, clock::time_point now);
    void arm_timer_locked(detail::queue_node* node, task_extras& extras, clock::time_point at,
                          bool run_deadline, bool retry = false);
    void answer_unstarted(detail::node_chain& chain, const std::exception_ptr& error) noexcept;

    // The start gate (gated queues only; defined in impl/dispatch.hpp).
    [[nodiscard]] start_gate_waker waker() noexcept {
        return start_gate_waker{&on_gate_wake, this};
    }
    /// The waker the gate calls: ask the gate again on this thread, or, inside this queue's
    /// dispatch loop on this thread, let that loop ask (dispatch never recurses).
    static void on_gate_wake(void* context) noexcept;
    /// Asks the gate for the start of a task of `priority` (under the lock).
    std::optional<permit_type> ask_gate_locked(int priority) noexcept;
    /// The gate refused: mark the waiting tasks a free slot was ready for as held.
    void hold_locked();
    /// `node` leaves the waiting tasks: it is no longer held.
    void unhold_locked(detail::queue_node* node) noexcept;
    void tell_demand_locked() noexcept;
    /// Gives a task that has just begun running its permit (under the lock).
    void seat_permit_locked(detail::queue_node* node, permit_type&& permit) noexcept;
    /// The task that starts next, given the inbox's oldest (`oldest_plain`, or null); sets
    /// `from_inbox` when it is that one.
    detail::queue_node* peek_next_locked(detail::queue_node* oldest_plain, bool& from_inbox);
    /// While keyed tasks wait, the inbox's tasks join the list, where turns are taken.
    void merge_inbox_for_turns_locked();

    [[nodiscard]] bool is_idle_locked() const noexcept {
        return counters_.active == 0 && waiting_count() == 0 && answering_ == 0;
    }
    void notify_if_idle_locked() {
        if (drain_waiters_ > 0 && is_idle_locked()) {
            became_idle_.notify_all();
        }
    }
    bool wait_for_size(std::size_t size, std::optional<clock::time_point> until);
    void wait_idle() {
        std::unique_lock lock(mutex_);
        ++drain_waiters_;
        became_idle_.wait(lock, [this] { return is_idle_locked(); });
        --drain_waiters_;
    }

    /// True on a thread where waiting for this queue would wait for the caller itself: inside
    /// its dispatch, on its timer thread, or on a thread its executor owns.
    [[nodiscard]] bool inside() const;
    void throw_if_inside() const {
        if (inside()) {
            throw wait_deadlock();
        }
    }

    // Set once, read on every submit without the lock: on lines of their own, so that no write
    // under the lock (the bucket, the key table) takes them out of the submitters' caches.
    alignas(64) const std::size_t capacity_;
    const overflow_policy overflow_;
    const std::optional<clock::duration> block_timeout_;
    const std::optional<clock::duration> queue_timeout_;
    const std::optional<clock::duration> run_timeout_;
    [[no_unique_address]] const gate_pointer gate_;
    const std::shared_ptr<queue_observer> observer_;

    // Read on every submit without the lock. The admission word counts admitted tasks not yet
    // started or answered, with closed_bit set by close(); the other two are written under the
    // lock and read by submitters deciding whether to dispatch.
    alignas(64) std::atomic<std::size_t> admission_{0};
    std::atomic<std::size_t> active_{0};
    std::atomic<std::size_t> max_concurrency_;
    std::atomic<bool> paused_;
    std::atomic<std::uint64_t> refused_{0};
    std::atomic<std::size_t> peak_queued_{0};

    detail::stub_node stub_;
    detail::inbox<detail::queue_node> inbox_{&stub_};

    // Guarded by the lock.
    alignas(64) mutable detail::adaptive_mutex mutex_;
    detail::waiting_list waiting_;
    detail::queue_counters counters_;
    std::size_t answering_ = 0; // taken out of the queue, answer not yet delivered
    std::size_t blocked_submitters_ = 0;
    std::size_t drain_waiters_ = 0;
    std::size_t size_waiters_ = 0; // in wait_until_size_below()
    detail::deadline_timer<timer_entry> timer_;
    std::condition_variable_any room_available_; // blocked submitters
    std::condition_variable_any became_idle_;    // drain()
    std::condition_variable_any size_dropped_;   // wait_until_size_below()
    // queue_options::rate: the bucket, and its wake-up in the timer (an entry without a node).
    std::optional<detail::token_bucket> rate_;
    bool rate_timer_armed_ = false;
    // Guarded by the lock: every key with tasks waiting or running.
    detail::key_table keys_;
    detail::node_list retrying_; // guarded by the lock: backing off before a retry
    // Guarded by the lock: the waiting tasks with a submit_options::id.
    std::unordered_multimap<std::uint64_t, detail::queue_node*> ids_;

    // Last, so it is destroyed first: its threads may still call back into the queue.
    Executor executor_;
};

} // namespace btq

#include "impl/admission.hpp"
#include "impl/dispatch.hpp"
#include "impl/lifecycle.hpp"
#include "impl/retry.hpp"
