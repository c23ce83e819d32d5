/// @file observer.hpp
/// @brief queue_observer: what a queue tells about each task as it travels (admitted, refused,
///        started, finished, never started), for metrics and logs without wrapping the executor.
#pragma once

#include <chrono>
#include <cstddef>

#include "errors.hpp"

namespace btq {

/// @brief How a task that ran ended (queue_observer::on_finished).
enum class task_outcome {
    succeeded, ///< it returned a value (or an error result the executor counts as success)
    failed,    ///< it threw, or its executor answered an error
    timed_out, ///< it passed its run timeout (btq::task_timeout), or failed with task_timeout
};

/// @brief What an observer learns of the task an event is about.
struct task_info {
    int priority = 0;       ///< submit_options::priority
    std::size_t weight = 1; ///< submit_options::weight (at start: what it holds)
};

/// @brief Receives a queue's events (queue_options::observer). Override what you need; every
///        member does nothing by default.
///
/// Every member is called outside the queue's lock, on the thread where the event happens (the
/// submitter for on_admitted / on_refused, the dispatching thread for on_started, the thread the
/// task completes on for on_finished, the one that clears, expires, cancels or displaces for
/// on_not_started), and must not throw (noexcept: an escaping exception ends the program). They
/// may call the queue (stats(), submit()), but not wait for it (drain()).
///
/// Each task gets exactly one of: on_refused; or on_admitted, then either on_started and
/// on_finished, or on_not_started (with retries: on_started and on_retrying once per failed attempt
/// before the last one's on_started). on_started always comes before on_finished; on_admitted is
/// reported by the submitting thread once admission is decided, so for a task that starts at
/// once on another thread it may come after that thread's on_started. With no observer set (the
/// default) the queue pays one pointer test per event.
/// @code
/// struct count_starts : btq::queue_observer {
///     std::atomic<int> started{0};
///     void on_started(const btq::task_info&, std::chrono::nanoseconds) noexcept override {
///         ++started;
///     }
/// };
/// auto observer = std::make_shared<count_starts>();
/// btq::bounded_task_queue<std::function<void()>> queue({.observer = observer});
/// @endcode
class queue_observer {
  public:
    /// @brief An observer that does nothing until its members are overridden.
    queue_observer() = default;
    /// @brief Copyable, as its derived classes may be.
    queue_observer(const queue_observer&) = default;
    /// @brief Copyable, as its derived classes may be.
    queue_observer& operator=(const queue_observer&) = default;
    /// @brief Movable, as its derived classes may be.
    queue_observer(queue_observer&&) = default;
    /// @brief Movable, as its derived classes may be.
    queue_observer& operator=(queue_observer&&) = default;
    /// @brief Destroyed through a pointer to this base.
    virtual ~queue_observer() = default;

    /// @brief The task was admitted (it waits, or started at once).
    virtual void on_admitted(const task_info& /*task*/) noexcept {}
    /// @brief submit() refused the task (`reason`: queue_full, queue_closed, expired or
    ///        cancelled); it was never admitted.
    virtual void on_refused(const task_info& /*task*/, not_run_reason /*reason*/) noexcept {}
    /// @brief The task is being handed to the executor after waiting `waited`.
    virtual void on_started(const task_info& /*task*/,
                            std::chrono::nanoseconds /*waited*/) noexcept {}
    /// @brief The task ran for `ran` and ended with `outcome`; its caller has been answered.
    virtual void on_finished(const task_info& /*task*/, task_outcome /*outcome*/,
                             std::chrono::nanoseconds /*ran*/) noexcept {}
    /// @brief Attempt `attempt` of the task failed and it will be tried again after `backoff`
    ///        (submit_options::retry); it starts again later (on_started), and on_finished
    ///        reports only its last attempt.
    virtual void on_retrying(const task_info& /*task*/, std::size_t /*attempt*/,
                             std::chrono::nanoseconds /*backoff*/) noexcept {}
    /// @brief An admitted task left without starting (`reason`: expired, cancelled,
    ///        queue_cleared, displaced, or gate_unavailable); its caller has been answered.
    virtual void on_not_started(const task_info& /*task*/, not_run_reason /*reason*/) noexcept {}
};

} // namespace btq
