#include "backend.hpp"

#include <btq/asio.hpp>
#include <btq/executors/subprocess_executor.hpp>
#include <btq/executors/worker_pool_executor.hpp>

#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>
#include <utility>

namespace schedule_server {
namespace {

/// Exit codes of schedule_worker that carry a JSON answer (docs/schedule-worker.md).
bool answers_with_json(int exit_code) {
    return exit_code == 0 || exit_code == 1 || exit_code == 2 || exit_code == 3;
}

btq::queue_options queue_options_for(const backend_options& options) {
    return btq::queue_options{
        .max_concurrency = options.pool_size,
        .capacity = options.queue_capacity,
        .overflow = btq::overflow_policy::reject,
        .queue_timeout = options.queue_timeout,
    };
}

/// The outcome of a task that did not produce an answer, from the exception it failed with.
run_outcome outcome_of(const std::exception_ptr& error) {
    run_outcome outcome;
    try {
        std::rethrow_exception(error);
    } catch (const btq::worker_start_error& failed) { // a task_not_run, but the server's fault
        outcome.result = run_outcome::kind::worker_failed;
        outcome.message = failed.what();
    } catch (const btq::spawn_error& failed) {
        outcome.result = run_outcome::kind::worker_failed;
        outcome.message = failed.what();
    } catch (const btq::task_not_run& refused) {
        outcome.result = run_outcome::kind::not_run;
        outcome.message = refused.what();
    } catch (const btq::task_timeout& late) {
        outcome.result = run_outcome::kind::timed_out;
        outcome.message = late.what();
    } catch (const std::exception& failed) {
        outcome.result = run_outcome::kind::worker_failed;
        outcome.message = failed.what();
    }
    return outcome;
}

/// Common part of both modes: the queue and the shutdown steps.
template <class Task, class Executor>
class queued_backend : public backend {
  public:
    using queue_type = btq::bounded_task_queue<Task, Executor>;

    template <class... ExecutorArgs>
    explicit queued_backend(const backend_options& options, ExecutorArgs&&... executor_args)
        : options_(options),
          queue_(queue_options_for(options), std::forward<ExecutorArgs>(executor_args)...) {}

    [[nodiscard]] btq::queue_stats stats() const override { return queue_.stats(); }
    [[nodiscard]] const backend_options& options() const noexcept override { return options_; }

    std::size_t close_and_clear(const std::string& reason) override {
        queue_.close();
        return queue_.clear(reason);
    }
    [[nodiscard]] bool drain(std::chrono::milliseconds grace) override {
        return queue_.drain(grace);
    }

    /// Cancels what still runs (the queue's executor kills the worker processes).
    void stop() override { queue_.executor().cancel_running(); }

  protected:
    /// Submits `task` (moved from) with `stop` as its stop token and waits without blocking a
    /// thread; `answered` turns the worker's answer into the outcome, outcome_of() every
    /// failure. (The task is passed by reference: see backend::run.)
    ///
    /// A request that failed after its client went away (its stop was requested) is client_gone
    /// whatever the failure says: btq::task_cancelled when it was still waiting (it never
    /// started), process_ending::cancelled in spawn mode (checked_subprocess_executor), a
    /// worker_failure in pool mode, where the worker was killed and is being replaced.
    template <class Answered>
    boost::asio::awaitable<run_outcome> submit(Task& task, const std::stop_token& stop,
                                               Answered answered) {
        std::exception_ptr failure;
        try {
            auto operation =
                btq::async_submit(queue_, std::move(task), btq::submit_options{.stop = stop},
                                  boost::asio::use_awaitable);
            co_return answered(co_await std::move(operation));
        } catch (...) {
            failure = std::current_exception();
        }
        run_outcome outcome = outcome_of(failure);
        if (stop.stop_requested()) {
            outcome.result = run_outcome::kind::client_gone;
        }
        co_return outcome;
    }

    backend_options options_;
    queue_type queue_;
};

/// The worker crashed, was killed, or exited without its JSON answer.
class worker_crashed : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

/// A schedule_worker run that ended without a JSON answer, in words.
std::string describe_failure(const btq::process_result& result) {
    std::string message;
    switch (result.ending) {
    case btq::process_ending::signaled:
        message = "schedule_worker was killed by signal " + std::to_string(result.signal);
        break;
    case btq::process_ending::output_limit:
        message = "schedule_worker wrote more output than allowed";
        break;
    default:
        message = "schedule_worker exited with status " + std::to_string(result.exit_code) +
                  (result.standard_output.empty() ? " and no answer" : "");
        break;
    }
    if (!result.standard_error.empty()) {
        const std::size_t shown = std::min<std::size_t>(result.standard_error.size(), 200);
        message += ": " + result.standard_error.substr(0, shown);
        while (!message.empty() && (message.back() == '\n' || message.back() == '\r')) {
            message.pop_back();
        }
    }
    return message;
}

/// @brief subprocess_executor, with the worker's exit judged before the queue sees it.
///
/// A process executor answers every run that started with a process_result, however it ended;
/// the queue would count a timed-out or crashed worker as a task that succeeded. This adapter
/// fails those runs instead — btq::task_timeout for a timeout, worker_crashed for a crash or a
/// run without its JSON answer — so /api/queue-stats and /metrics count them as errors, exactly
/// as the worker pool does. A run that answered (exit 0–3 with its JSON) is a success, whatever
/// the JSON says.
class checked_subprocess_executor {
  public:
    template <class Task>
    using result_type = btq::process_result;
    /// The request's stop token reaches the inner executor, which stops the process.
    static constexpr bool stops_running_tasks = true;

    void execute(btq::command&& command, btq::completion<btq::process_result> done) {
        const std::chrono::nanoseconds waited = done.waited();
        std::stop_token stop = done.stop_token();
        inner_.execute(std::move(command),
                       btq::completion<btq::process_result>::from(
                           [done = std::move(done),
                            waited](btq::task_result<btq::process_result>&& result) mutable {
                               judge(std::move(result), std::move(done), waited);
                           },
                           std::move(stop)));
    }

    void cancel_running() { inner_.cancel_running(); }

  private:
    static void judge(btq::task_result<btq::process_result>&& result,
                      btq::completion<btq::process_result> done, std::chrono::nanoseconds waited) {
        if (!result.has_value()) { // it did not start (spawn_error, task_cancelled)
            done.set_exception(result.error());
            return;
        }
        btq::process_result& run = result.value();
        run.wait_time = waited;
        if (run.ending == btq::process_ending::timed_out) {
            done.set_exception(std::make_exception_ptr(
                btq::task_timeout("schedule_worker ran past the task timeout and was stopped")));
        } else if (run.ending == btq::process_ending::cancelled) {
            done.set_exception(std::make_exception_ptr(
                worker_crashed("schedule_worker was stopped: its client went away")));
        } else if (run.ending == btq::process_ending::exited && answers_with_json(run.exit_code) &&
                   !run.stdout_truncated && !run.standard_output.empty()) {
            done.set_value(std::move(run));
        } else {
            done.set_exception(std::make_exception_ptr(worker_crashed(describe_failure(run))));
        }
    }

    btq::subprocess_executor inner_;
};

/// --mode spawn: one schedule_worker process per request.
class spawn_backend final : public queued_backend<btq::command, checked_subprocess_executor> {
  public:
    explicit spawn_backend(const backend_options& options) : queued_backend(options) {}

    boost::asio::awaitable<run_outcome> run(const std::string& operation, std::string& body,
                                            const std::stop_token& stop) override {
        btq::command task;
        task.program = options_.worker_program.string();
        task.arguments = {"--data-dir", options_.data_dir.string(), operation};
        task.standard_input = std::move(body);
        task.timeout = options_.task_timeout;
        task.kill_grace = std::chrono::milliseconds(500);
        co_return co_await submit(task, stop, [](btq::process_result result) {
            return run_outcome{.result = run_outcome::kind::answered,
                               .body = std::move(result.standard_output),
                               .message = {},
                               .wait_time = result.wait_time,
                               .run_time = result.run_time};
        });
    }
};

btq::worker_pool_options pool_options_for(const backend_options& options) {
    btq::worker_pool_options pool;
    pool.worker.program = options.worker_program.string();
    pool.worker.arguments = {"--data-dir", options.data_dir.string(), "--serve"};
    pool.worker.kill_grace = std::chrono::milliseconds(500);
    pool.workers = options.pool_size;
    pool.task_timeout = options.task_timeout;
    pool.shutdown_grace = std::chrono::milliseconds(1000);
    return pool;
}

/// --mode pool: persistent schedule_worker processes.
class pool_backend final : public queued_backend<btq::worker_request, btq::worker_pool_executor> {
  public:
    explicit pool_backend(const backend_options& options)
        : queued_backend(options, pool_options_for(options)) {}

    boost::asio::awaitable<run_outcome> run(const std::string& operation, std::string& body,
                                            const std::stop_token& stop) override {
        btq::worker_request task;
        task.operation = operation;
        task.body = std::move(body);
        co_return co_await submit(task, stop, [](btq::worker_response response) {
            return run_outcome{.result = run_outcome::kind::answered,
                               .body = std::move(response.body),
                               .message = {},
                               .wait_time = response.wait_time,
                               .run_time = response.run_time};
        });
    }
};

} // namespace

std::unique_ptr<backend> make_backend(const backend_options& options) {
    if (options.pool_size == 0) {
        throw std::invalid_argument("--pool-size must be at least 1");
    }
    if (options.mode == run_mode::spawn) {
        return std::make_unique<spawn_backend>(options);
    }
    return std::make_unique<pool_backend>(options);
}

} // namespace schedule_server
