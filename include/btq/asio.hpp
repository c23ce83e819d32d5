/// @file asio.hpp
/// @brief Optional Boost.Asio binding: btq::async_submit() submits a task to a
///        bounded_task_queue and completes any Asio completion token (use_awaitable, use_future,
///        deferred, a plain callback, ...) with the task's outcome.
///
/// This header is not included by btq.hpp; include it explicitly and make Boost's headers
/// (1.81 or later, header-only Asio) available, e.g. `target_link_libraries(app PRIVATE btq::btq
/// Boost::headers)`. Only the stable Asio API is used (no `boost::asio::experimental`).
///
/// @code
/// #include <btq/asio.hpp>
///
/// btq::bounded_task_queue<std::function<int()>> queue({.max_concurrency = 4, .capacity = 100});
///
/// boost::asio::awaitable<void> handle(request r) {
///     try {
///         int answer = co_await btq::async_submit(queue, [r] { return work(r); },
///                                                 boost::asio::use_awaitable);
///         reply(answer);
///     } catch (const btq::task_not_run& e) { // full, closed, cleared, expired
///         reply_503(e.what());
///     }
/// }
/// @endcode
///
/// Semantics, in short:
/// - **Completion signature**: `void(std::exception_ptr, R)` for a task returning `R`,
///   `void(std::exception_ptr)` for a task returning nothing. The exception pointer is null on
///   success; otherwise it holds the task's own exception, or one derived from btq::task_not_run
///   when the task never started. On failure the `R` argument is value-initialised, so `R` must
///   be default-initialisable (as with `boost::asio::co_spawn`).
/// - **Refusals never throw from async_submit()**: queue_full, queue_closed and task_expired
///   (and anything else `queue.submit()` throws, such as std::bad_alloc) arrive through the
///   completion, exactly like queue_cleared, task_displaced and a waiting task's expiry. The only
///   exception async_submit() itself can throw is std::bad_alloc when the operation's own state
///   cannot be allocated (the token's handler is then destroyed uncalled, as in Asio).
/// - **Where the handler runs**: always *posted* (`boost::asio::post`) to the handler's
///   associated executor, never invoked inside async_submit() and never on a queue worker
///   thread. A coroutine therefore resumes on its own executor (its strand, if it has one). A
///   plain callback with no associated executor runs on Asio's `system_executor`; bind one with
///   `boost::asio::bind_executor` to choose the thread.
/// - **Work tracking**: from initiation until the handler has been posted, the operation holds
///   outstanding work on the handler's associated executor (`boost::asio::make_work_guard`), so
///   `io_context::run()` does not return while a submitted task waits or runs.
/// - **Ordering with the queue**: the handler is posted while the task still holds its slot (the
///   queue answers before it frees the slot), so a handler may run before the slot is free, and
///   when drain() returns every handler has been posted but not necessarily run.
/// - **overflow_policy::block** blocks the initiating thread, as submit() does (up to
///   `block_timeout`). On an event loop thread prefer `reject` or `drop_oldest`.
/// - **Per-operation cancellation**: when the handler has a connected cancellation slot (a
///   coroutine's own with use_awaitable, as the operators of
///   `boost/asio/experimental/awaitable_operators.hpp` and `parallel_group` connect it; a callback
///   wrapped in `boost::asio::bind_cancellation_slot`), the task is submitted with a stop token of
///   the operation's own as its `submit_options::stop` (a `stop` token the caller passed in the
///   options is connected to it: requesting either stops the task), and a handler is installed
///   in the slot:
///   - `cancellation_type::terminal` or `partial` requests that stop. A task still waiting is
///     answered at once with btq::task_cancelled: it never starts and its place is freed. A
///     running task's stop token is requested: thread_executor and callable_executor hand it to
///     a task that takes a std::stop_token (cooperative: the task decides), the process
///     executors stop the child process or the worker (see subprocess_executor,
///     worker_pool_executor). The completion then gets whatever the task produced: its value,
///     its exception, the process executor's outcome.
///   - `cancellation_type::total` alone is ignored. It asks that a cancelled operation leave no
///     effects, and a task that may have started has effects: btq cannot withdraw a task without
///     the risk that it already runs. (A coroutine accepts only terminal cancellation unless it
///     changes its filter, `boost::asio::this_coro::reset_cancellation_state`.)
///   - The handler is removed from the slot on the handler's associated executor, just before
///     the completion handler runs there. The slot must be used from that executor, as every
///     Asio slot is.
///   Without a connected slot nothing is installed and `options` reach the queue unchanged. Use a
///   queue deadline (`btq::submit_options`), clear() or shutdown() to bound how long a caller
///   waits.
/// - **Lifetimes**: the queue must outlive the initiation (with lazy tokens such as
///   use_awaitable and deferred, initiation happens when the operation is awaited or launched),
///   and the handler's execution context must outlive the operation: drain or shut the queue
///   down before destroying the `io_context`.
/// - **GCC 12 and braced temporaries**: in a coroutine, GCC 12 corrupts a *braced aggregate
///   temporary* holding a std::string when it is an argument inside a `co_await` expression
///   (its short-string pointer is left pointing at the temporary's old place; reproduced with
///   plain Asio operations, no btq involved). Build such a task in a named variable first:
///   `job task{...}; co_await btq::async_submit(queue, std::move(task), use_awaitable);`.
#pragma once

#include <concepts>
#include <exception>
#include <memory>
#include <optional>
#include <stop_token>
#include <tuple>
#include <type_traits>
#include <utility>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/associator.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>

#include "bounded_task_queue.hpp"
#include "executor.hpp"
#include "options.hpp"

namespace btq {

namespace detail {

template <class R>
struct asio_signature {
    using type = void(std::exception_ptr, R);
};
template <>
struct asio_signature<void> {
    using type = void(std::exception_ptr);
};

/// Requests stop on a source it shares: the std::stop_callback that connects the caller's own
/// stop token to an operation's stop source.
struct request_stop_of {
    std::stop_source target;
    void operator()() noexcept { target.request_stop(); }
};

/// The handler an operation installs in its cancellation slot: terminal and partial
/// cancellation request stop on the operation's stop source, total alone is ignored (see the
/// file comment). It shares the source, so it is safe to call until the slot is cleared.
struct asio_cancellation_handler {
    std::stop_source stop;
    void operator()(boost::asio::cancellation_type_t type) noexcept {
        constexpr auto stopping =
            boost::asio::cancellation_type::terminal | boost::asio::cancellation_type::partial;
        if ((type & stopping) != boost::asio::cancellation_type::none) {
            stop.request_stop();
        }
    }
};

/// What is posted to the handler's associated executor: clears the operation's cancellation
/// slot there, then calls the handler with the outcome (`Arguments`, a std::tuple). It has the
/// handler's associated executor, allocator and the rest (the associator after namespace btq).
template <class Handler, class Arguments>
struct asio_completion_call {
    boost::asio::cancellation_slot slot;
    Handler handler;
    Arguments arguments;
    void operator()() {
        slot.clear();
        std::apply(std::move(handler), std::move(arguments));
    }
};

/// The state of one async_submit() operation: the handler, the outstanding work that keeps its
/// executor alive and, with a connected cancellation slot, what connects the slot to the task's
/// stop token. Owned by the initiation until the queue admits the task, then by the queue
/// callback, which is called exactly once for an admitted task.
template <class Handler, class R>
class asio_submit_op {
  public:
    explicit asio_submit_op(Handler handler)
        : work_(boost::asio::make_work_guard(handler)), handler_(std::move(handler)) {}

    /// The options to submit with. When the handler has a connected cancellation slot: a stop
    /// token of this operation's own, which the slot's handler requests (and `options.stop`
    /// too, if it can be stopped). Otherwise `options` unchanged.
    submit_options connect_cancellation(submit_options options) {
        boost::asio::cancellation_slot slot =
            boost::asio::get_associated_cancellation_slot(handler_);
        if (!slot.is_connected()) {
            return options;
        }
        const std::stop_source own;
        if (options.stop.stop_possible()) {
            caller_stop_.emplace(options.stop, request_stop_of{own});
        }
        options.stop = own.get_token();
        slot.template emplace<asio_cancellation_handler>(asio_cancellation_handler{own});
        slot_ = slot;
        return options;
    }

    /// Posts the handler with `result` to its associated executor and destroys the operation.
    static void complete(std::unique_ptr<asio_submit_op> self, task_result<R>&& result) {
        auto executor = self->work_.get_executor();
        Handler handler = std::move(self->handler_);
        auto work = std::move(self->work_); // keeps the executor busy until post() has run
        const boost::asio::cancellation_slot slot = self->slot_;
        self.reset();
        const auto post_with = [&](auto... outcome) {
            using call = asio_completion_call<Handler, std::tuple<decltype(outcome)...>>;
            boost::asio::post(executor, call{slot, std::move(handler), {std::move(outcome)...}});
        };
        if constexpr (std::is_void_v<R>) {
            post_with(take_error(result));
        } else if (result.has_value()) {
            post_with(std::exception_ptr(), std::move(result).value());
        } else {
            post_with(take_error(result), R{});
        }
    }

  private:
    /// The error of `result`, leaving `result` without a reference to it, so the queue thread
    /// does not keep the exception alive through its bookkeeping after the handler is posted.
    static std::exception_ptr take_error(task_result<R>& result) noexcept {
        std::exception_ptr error = result.error();
        task_result<R> emptied(std::move(result)); // result's exception_ptr is now null
        return error;
    }

    boost::asio::executor_work_guard<boost::asio::associated_executor_t<Handler>> work_;
    Handler handler_;
    boost::asio::cancellation_slot slot_; ///< connected when a handler was installed in it
    /// Requests this operation's stop source when the caller's own stop token is requested.
    std::optional<std::stop_callback<request_stop_of>> caller_stop_;
};

/// The callback handed to bounded_task_queue::submit(): a pointer to the operation.
template <class Op, class R>
struct asio_submit_callback {
    Op* op;
    void operator()(task_result<R>&& result) const noexcept {
        try {
            Op::complete(std::unique_ptr<Op>(op), std::move(result));
        } catch (...) {
            // Only a failed post() (std::bad_alloc) gets here, and it cannot be reported to
            // anyone: the handler is gone. As with an exception escaping a std::thread, the
            // program ends rather than leave its caller waiting forever.
            std::terminate();
        }
    }
};

/// The initiation object passed to boost::asio::async_initiate.
template <class Task, class Executor, class Gate>
struct initiate_async_submit {
    bounded_task_queue<Task, Executor, Gate>* queue;

    template <class Handler>
    void operator()(Handler&& handler, Task task, const submit_options& options) const {
        using result_type = typename bounded_task_queue<Task, Executor, Gate>::result_type;
        using op_type = asio_submit_op<std::decay_t<Handler>, result_type>;
        auto op = std::make_unique<op_type>(std::forward<Handler>(handler));
        try {
            // Before submit(): once the task is admitted, the operation may complete at any time.
            const submit_options submitted = op->connect_cancellation(options);
            queue->submit(std::move(task), asio_submit_callback<op_type, result_type>{op.get()},
                          submitted);
        } catch (...) {
            // Refused (the queue guarantees the callback is never called when submit throws):
            // the operation is still ours, and answers through its handler.
            op_type::complete(std::move(op), task_result<result_type>(std::current_exception()));
            return;
        }
        // Admitted: the callback owns the operation now (it may already have run and freed it).
        static_cast<void>(op.release());
    }
};

} // namespace detail

/// @brief The Asio completion signature of async_submit() for a task whose result is `R`:
///        `void(std::exception_ptr, R)`, or `void(std::exception_ptr)` when `R` is void.
/// @code
/// static_assert(std::is_same_v<btq::asio_submit_signature<int>, void(std::exception_ptr, int)>);
/// @endcode
template <class R>
using asio_submit_signature = typename detail::asio_signature<R>::type;

/// @brief Submits `task` to `queue` with per-task `options` (priority, deadline) and completes
///        `token` with the outcome: `(std::exception_ptr, R)`, or `(std::exception_ptr)` for a
///        void task.
///
/// Initiation calls `queue.submit(task, callback, options)`. Refusals (btq::queue_full,
/// btq::queue_closed, btq::task_expired) never throw from here: like every other outcome they
/// arrive through the completion, posted to the handler's associated executor. Outstanding
/// work is held on that executor until then. A connected cancellation slot cancels a waiting
/// task (btq::task_cancelled) and requests a running task's stop token on terminal or partial
/// cancellation. See the file comment for the full semantics.
///
/// @param queue   the queue; must outlive the initiation (for use_awaitable: the co_await)
/// @param task    the task, moved into the queue
/// @param options priority, queue deadline and stop token of this task
/// @param token   any Asio completion token for asio_submit_signature<R>
/// @return whatever `token` makes of the operation (void for a callback, `awaitable<R>` for
///         use_awaitable, `std::future<R>` for use_future, ...)
/// @code
/// // inside a coroutine: a high-priority task that must start within 2 s
/// int n = co_await btq::async_submit(queue, [] { return count_rows(); },
///                                    btq::submit_options::within(std::chrono::seconds(2), 10),
///                                    boost::asio::use_awaitable);
/// @endcode
template <class Task, class Executor, class Gate,
          boost::asio::completion_token_for<
              asio_submit_signature<typename bounded_task_queue<Task, Executor, Gate>::result_type>>
              CompletionToken>
auto async_submit(bounded_task_queue<Task, Executor, Gate>& queue, std::type_identity_t<Task> task,
                  const submit_options& options, CompletionToken&& token) {
    using result_type = typename bounded_task_queue<Task, Executor, Gate>::result_type;
    static_assert(std::is_void_v<result_type> || std::default_initializable<result_type>,
                  "btq::async_submit: the task's result type must be default-initialisable "
                  "(the completion passes a value-initialised R along with an error)");
    return boost::asio::async_initiate<CompletionToken, asio_submit_signature<result_type>>(
        detail::initiate_async_submit<Task, Executor, Gate>{&queue}, token, std::move(task),
        options);
}

/// @brief Submits `task` to `queue` with default options and completes `token` with the
///        outcome: `(std::exception_ptr, R)`, or `(std::exception_ptr)` for a void task.
///
/// The same as the overload taking btq::submit_options, with `submit_options{}`.
/// @code
/// // a coroutine: resumes on its own executor with the value, or throws the error
/// int answer = co_await btq::async_submit(queue, [] { return 6 * 7; },
///                                         boost::asio::use_awaitable);
///
/// // a callback, run on the io_context's thread
/// btq::async_submit(queue, [] { return 6 * 7; },
///                   boost::asio::bind_executor(io, [](std::exception_ptr error, int answer) {
///                       if (!error) use(answer);
///                   }));
///
/// // a future
/// std::future<int> f = btq::async_submit(queue, [] { return 6 * 7; }, boost::asio::use_future);
/// @endcode
template <class Task, class Executor, class Gate,
          boost::asio::completion_token_for<
              asio_submit_signature<typename bounded_task_queue<Task, Executor, Gate>::result_type>>
              CompletionToken>
auto async_submit(bounded_task_queue<Task, Executor, Gate>& queue, std::type_identity_t<Task> task,
                  CompletionToken&& token) {
    return async_submit(queue, std::move(task), submit_options{},
                        std::forward<CompletionToken>(token));
}

} // namespace btq

/// @cond BTQ_INTERNAL
// The completion posted by async_submit() has the associated executor, allocator, cancellation
// slot and immediate executor of the handler it calls, as Asio's own binders do. (Left out of the
// API reference: a specialization of Asio's, for a type of btq::detail.)
template <template <class, class> class Associator, class Handler, class Arguments,
          class DefaultCandidate>
struct boost::asio::associator<Associator, btq::detail::asio_completion_call<Handler, Arguments>,
                               DefaultCandidate> {
    using call = btq::detail::asio_completion_call<Handler, Arguments>;
    using type = typename Associator<Handler, DefaultCandidate>::type;
    static type get(const call& completion) noexcept {
        return Associator<Handler, DefaultCandidate>::get(completion.handler);
    }
    static auto get(const call& completion, const DefaultCandidate& candidate) noexcept
        -> decltype(Associator<Handler, DefaultCandidate>::get(completion.handler, candidate)) {
        return Associator<Handler, DefaultCandidate>::get(completion.handler, candidate);
    }
};
/// @endcond
