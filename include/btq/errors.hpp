/// @file errors.hpp
/// @brief The exceptions btq reports. Every "this task never ran" error derives from
///        btq::task_not_run, so one `catch` handles all of them.
#pragma once

#include <exception>
#include <stdexcept>
#include <string>
#include <utility>

namespace btq {

/// @brief Why a task was answered without ever being started.
enum class not_run_reason {
    queue_full, ///< refused at admission: the queue was at capacity (or a blocked submit timed out)
    displaced,  ///< admitted, then pushed out by a newer task under overflow_policy::drop_oldest
    queue_closed,     ///< refused at admission: close() or shutdown() had been called
    queue_cleared,    ///< admitted, then failed by clear() / shutdown() / the queue's destructor
    expired,          ///< admitted, still waiting when its queue deadline passed
    not_started,      ///< handed to the executor, which could not start it (a program or a worker
                      ///< that cannot be started): btq::spawn_error, btq::worker_start_error
    cancelled,        ///< admitted, then its submit_options::stop was requested while it waited
    gate_unavailable, ///< admitted, then refused by a start gate that cannot decide (a cluster
                      ///< permit pool whose Redis is unreachable, in its fail-fast mode)
};

/// @brief Base of every error for work that never started. Catch this to handle every
///        "did not run" case at once.
/// @code
/// try { auto value = queue.submit(task).get(); }
/// catch (const btq::task_not_run& e) { respond_503(e.what()); }  // never started
/// catch (const std::exception& e)    { respond_500(e.what()); }  // ran and failed
/// @endcode
class task_not_run : public std::runtime_error {
  public:
    /// @brief An error of kind `reason` whose what() is `message`.
    task_not_run(not_run_reason reason, const std::string& message)
        : std::runtime_error(message), reason_(reason) {}

    /// @brief Which of the "did not run" cases this is.
    [[nodiscard]] not_run_reason reason() const noexcept { return reason_; }

  private:
    not_run_reason reason_;
};

/// @brief The queue was full: under overflow_policy::reject, or a blocked submit that timed out.
class queue_full : public task_not_run {
  public:
    /// @brief A full queue; what() is `message`.
    explicit queue_full(const std::string& message = "btq: queue is full")
        : task_not_run(not_run_reason::queue_full, message) {}

  protected:
    /// @brief For derived errors that are a full queue of another kind (task_displaced).
    queue_full(not_run_reason reason, const std::string& message) : task_not_run(reason, message) {}
};

/// @brief The task had been waiting and was pushed out by a newer one
/// (overflow_policy::drop_oldest).
///        Derives from queue_full: to its caller, the queue was full.
class task_displaced : public queue_full {
  public:
    task_displaced()
        : queue_full(not_run_reason::displaced,
                     "btq: queue is full; task displaced by a newer one (drop_oldest)") {}
};

/// @brief The queue no longer admits work (close() or shutdown() was called).
class queue_closed : public task_not_run {
  public:
    queue_closed() : task_not_run(not_run_reason::queue_closed, "btq: queue is closed") {}
};

/// @brief The task was waiting when clear() ran; carries the reason clear() was given.
class queue_cleared : public task_not_run {
  public:
    /// @brief A task failed by clear(`reason`); what() is "btq: queue cleared: " + `reason`.
    explicit queue_cleared(std::string reason)
        : task_not_run(not_run_reason::queue_cleared, "btq: queue cleared: " + reason),
          reason_text_(std::move(reason)) {}

    /// @brief The text passed to clear(), e.g. "Server shutting down".
    [[nodiscard]] const std::string& clear_reason() const noexcept { return reason_text_; }

  private:
    std::string reason_text_;
};

/// @brief The task's queue deadline passed while it was still waiting; it never started.
class task_expired : public task_not_run {
  public:
    task_expired()
        : task_not_run(not_run_reason::expired, "btq: task expired while waiting in the queue") {}
};

/// @brief The task's stop token (submit_options::stop) was requested while it waited; it never
///        started and its place in the queue was freed at once.
class task_cancelled : public task_not_run {
  public:
    task_cancelled()
        : task_not_run(not_run_reason::cancelled,
                       "btq: task cancelled while waiting in the queue") {}
};

/// @brief A start gate could not decide whether the task may start and was configured to fail
///        rather than hold it (btq::redis_permits in redis_unreachable::fail_fast mode while its
///        Redis is unreachable). what() names the gate and the cause.
class gate_unavailable : public task_not_run {
  public:
    /// @brief A refusal whose what() is `message`.
    explicit gate_unavailable(const std::string& message)
        : task_not_run(not_run_reason::gate_unavailable, message) {}
};

/// @brief A task that started but exceeded its run timeout (reported by executors that enforce
///        one, such as the process executors). It ran, so it is not a task_not_run.
class task_timeout : public std::runtime_error {
  public:
    /// @brief A timeout whose what() is `message`.
    explicit task_timeout(const std::string& message = "btq: task exceeded its run timeout")
        : std::runtime_error(message) {}
};

/// @brief An executor dropped a task's completion handle without calling it. The task may or
///        may not have run; the queue reports this instead of leaving the caller waiting forever.
class broken_completion : public std::logic_error {
  public:
    broken_completion() : std::logic_error("btq: executor released a task without completing it") {}
};

namespace detail {
/// True if `error` holds a btq::task_timeout.
inline bool is_timeout(const std::exception_ptr& error) noexcept {
    try {
        std::rethrow_exception(error);
    } catch (const task_timeout&) {
        return true;
    } catch (...) {
        return false;
    }
}
} // namespace detail

/// @brief A call that could never return: drain() or shutdown() called from one of the queue's
///        own tasks (or its callbacks), which would wait for itself.
class wait_deadlock : public std::logic_error {
  public:
    wait_deadlock()
        : std::logic_error("btq: drain() or shutdown() called from one of the queue's own tasks "
                           "would wait for itself") {}
};

} // namespace btq
