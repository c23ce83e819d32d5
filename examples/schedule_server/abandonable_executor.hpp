/// @file abandonable_executor.hpp
/// @brief An executor adapter that does not start a task whose caller has gone away.
#pragma once

#include <btq/executor.hpp>

#include <atomic>
#include <exception>
#include <memory>
#include <stdexcept>
#include <utility>

namespace schedule_server {

/// The answer of a task that was not started because its caller had gone (the HTTP client
/// disconnected while the request waited in the queue).
class caller_gone : public std::runtime_error {
  public:
    caller_gone() : std::runtime_error("the client went away before the request started") {}
};

/// A task with a flag its caller sets when it no longer wants the answer.
template <class Task>
struct abandonable {
    using task_type = Task;
    Task task;
    std::shared_ptr<std::atomic<bool>> abandoned;
};

/// @brief Wraps an executor: an abandonable<Task> whose flag is set when its turn comes is
///        answered with caller_gone instead of being started, so its slot goes straight to the
///        next waiter. A waiting request costs nothing once its client has left.
template <class Inner>
class abandonable_executor {
  public:
    template <class Wrapped>
    using result_type = btq::executor_result_t<Inner, typename Wrapped::task_type>;

    template <class... Args>
    explicit abandonable_executor(Args&&... args) : inner_(std::forward<Args>(args)...) {}

    template <class Task>
    void execute(abandonable<Task>&& wrapped,
                 btq::completion<btq::executor_result_t<Inner, Task>> done) {
        if (wrapped.abandoned && wrapped.abandoned->load(std::memory_order_acquire)) {
            done.set_exception(std::make_exception_ptr(caller_gone()));
            return;
        }
        inner_.execute(std::move(wrapped.task), std::move(done));
    }

    /// Lets the queue's destructor stop running tasks when the inner executor can.
    void cancel_running() requires btq::cancellable_executor<Inner> { inner_.cancel_running(); }

    [[nodiscard]] Inner& inner() noexcept { return inner_; }

  private:
    Inner inner_;
};

} // namespace schedule_server
