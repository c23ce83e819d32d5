#include "backend.hpp"
#include "byte_size.hpp"

#include <btq/asio.hpp>
#include <btq/executors/subprocess_executor.hpp>
#include <btq/executors/worker_pool_executor.hpp>
#include <btq/gates/gate_chain.hpp>
#include <btq/gates/memory_gate.hpp>
#if SCHEDULE_SERVER_REDIS
#include <btq/redis/redis_permits.hpp>
#endif

#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <atomic>
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
        .max_per_key = options.max_per_client,
        .capacity_per_key = options.capacity_per_client,
    };
}

/// A schedule_worker run went above the task memory limit and was stopped (spawn mode; in pool
/// mode the pool's btq::worker_failure says so).
class memory_limit_reached : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

/// A schedule_worker run stopped through its stop token (spawn mode; in pool mode the pool's
/// btq::worker_failure says so with worker_failure_cause::stop_requested): its client went away,
/// or its cluster-wide lease was lost.
class run_stopped : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

/// True if `error` says the run was stopped through its stop token while it ran.
bool stopped_while_running(const std::exception_ptr& error) {
    try {
        std::rethrow_exception(error);
    } catch (const run_stopped&) {
        return true;
    } catch (const btq::worker_failure& failed) {
        return failed.cause() == btq::worker_failure_cause::stop_requested;
    } catch (...) {
        return false;
    }
}

/// Raises `peak` to `seen` if it is larger.
void raise_to(std::atomic<std::uint64_t>& peak, std::uint64_t seen) noexcept {
    std::uint64_t known = peak.load(std::memory_order_relaxed);
    while (seen > known && !peak.compare_exchange_weak(known, seen, std::memory_order_relaxed)) {
    }
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
    } catch (const memory_limit_reached& stopped) {
        outcome.result = run_outcome::kind::memory_limit;
        outcome.message = stopped.what();
    } catch (const btq::worker_failure& failed) {
        const bool at_limit = failed.cause() == btq::worker_failure_cause::memory_limit;
        outcome.result =
            at_limit ? run_outcome::kind::memory_limit : run_outcome::kind::worker_failed;
        outcome.message = failed.what();
    } catch (const std::exception& failed) {
        outcome.result = run_outcome::kind::worker_failed;
        outcome.message = failed.what();
    }
    return outcome;
}

btq::memory_gate_options memory_gate_options_for(const backend_options& options) {
    return btq::memory_gate_options{
        .min_available_bytes = options.min_available_memory.value_or(0),
        .max_pressure = options.max_memory_pressure,
    };
}

/// Requests held back by the memory gate: now, and in total.
struct memory_holds {
    std::size_t held = 0;
    std::uint64_t total = 0;
};

/// The start gate of the server's queue and how the queue is built with it: btq::no_gate
/// (nothing to build, nothing to read), a btq::memory_gate from the memory flags, a
/// btq::redis_permits from --redis, or both chained, memory first.
template <class Gate>
struct server_gate {
    explicit server_gate(const backend_options& /*options*/) {}
    template <class Queue, class... Arguments>
    Queue make_queue(Arguments&&... arguments) {
        return Queue(std::forward<Arguments>(arguments)...);
    }
    [[nodiscard]] std::optional<redis_gate_stats> redis() const { return std::nullopt; }
    template <class Queue>
    [[nodiscard]] static memory_holds held_for_memory(const Queue& /*queue*/) {
        return {};
    }
};

template <>
struct server_gate<btq::memory_gate> {
    explicit server_gate(const backend_options& options) : gate(memory_gate_options_for(options)) {}
    template <class Queue, class... Arguments>
    Queue make_queue(Arguments&&... arguments) {
        return Queue(gate, std::forward<Arguments>(arguments)...);
    }
    [[nodiscard]] std::optional<redis_gate_stats> redis() const { return std::nullopt; }
    /// The queue's own count: every task it holds, the memory gate holds.
    template <class Queue>
    [[nodiscard]] static memory_holds held_for_memory(const Queue& queue) {
        const btq::queue_stats stats = queue.stats();
        return {.held = stats.held_by_gate, .total = stats.gate_holds_total};
    }
    btq::memory_gate gate;
};

#if SCHEDULE_SERVER_REDIS
/// --redis, --global-concurrency, --redis-lease-ttl-ms, --redis-unavailable: the settings of a
/// btq::redis_permits gate of global_concurrency permits (Redis unreachable: requests wait,
/// their queue timeout still expires, /readyz says so; or they fail fast with a 503).
btq::redis_permits_options redis_options_for(const backend_options& options) {
    return btq::redis_permits_options{
        .endpoint = options.redis.value(),
        .limit = options.global_concurrency,
        .lease_ttl = options.redis_lease_ttl,
        .when_unreachable = options.redis_fail_fast ? btq::redis_unreachable::fail_fast
                                                    : btq::redis_unreachable::hold,
        .on_lease_lost = [](const btq::redis_lease_lost& lost) {
            std::fprintf(stderr,
                         "schedule_server: a request's Redis lease (fencing token %llu) was "
                         "lost: it is stopped (%s)\n",
                         static_cast<unsigned long long>(lost.fencing_token), lost.reason.c_str());
        }};
}

redis_gate_stats redis_stats_of(const btq::redis_permits& gate) {
    const btq::redis_permits_stats stats = gate.stats();
    return redis_gate_stats{.url = btq::to_url(gate.options().endpoint),
                            .limit = stats.limit,
                            .permits_held = stats.permits_held,
                            .waiters = stats.waiters,
                            .grants = stats.grants,
                            .lease_renewals = stats.lease_renewals,
                            .leases_lost = stats.leases_lost,
                            .redis_errors = stats.redis_errors,
                            .reconnects = stats.reconnects,
                            .healthy = stats.healthy,
                            .last_error = stats.last_error};
}

template <>
struct server_gate<btq::redis_permits> {
    explicit server_gate(const backend_options& options) : gate(redis_options_for(options)) {}
    template <class Queue, class... Arguments>
    Queue make_queue(Arguments&&... arguments) {
        return Queue(gate, std::forward<Arguments>(arguments)...);
    }
    [[nodiscard]] std::optional<redis_gate_stats> redis() const { return redis_stats_of(gate); }
    template <class Queue>
    [[nodiscard]] static memory_holds held_for_memory(const Queue& /*queue*/) {
        return {};
    }
    btq::redis_permits gate;
};

/// Both: memory first, so a request waiting for memory holds no cluster-wide permit.
using memory_then_redis = btq::gate_chain<btq::memory_gate, btq::redis_permits>;

template <>
struct server_gate<memory_then_redis> {
    explicit server_gate(const backend_options& options)
        : memory(memory_gate_options_for(options)), cluster(redis_options_for(options)),
          gate(memory, cluster) {}
    template <class Queue, class... Arguments>
    Queue make_queue(Arguments&&... arguments) {
        return Queue(gate, std::forward<Arguments>(arguments)...);
    }
    [[nodiscard]] std::optional<redis_gate_stats> redis() const { return redis_stats_of(cluster); }
    /// The chain's count for its first gate (the Redis gate's waiters are its own).
    template <class Queue>
    [[nodiscard]] memory_holds held_for_memory(const Queue& /*queue*/) const {
        return {.held = gate.held_by(0), .total = gate.holds_total(0)};
    }
    btq::memory_gate memory;
    btq::redis_permits cluster;
    memory_then_redis gate;
};
#endif

/// "the task went above its memory limit (256 MiB)": the message of a 507.
std::string memory_limit_message(const backend_options& options) {
    return "the task went above its memory limit (" +
           describe_byte_size(options.task_memory_limit.value_or(0)) + ")";
}

/// Common part of both modes: the queue (behind its gate) and the shutdown steps.
template <class Task, class Executor, class Gate>
class queued_backend : public backend {
  public:
    using queue_type = btq::bounded_task_queue<Task, Executor, Gate>;

    template <class... ExecutorArgs>
    explicit queued_backend(const backend_options& options, ExecutorArgs&&... executor_args)
        : options_(options), gate_(options),
          queue_(gate_.template make_queue<queue_type>(
              queue_options_for(options), std::forward<ExecutorArgs>(executor_args)...)) {}

    [[nodiscard]] btq::queue_stats stats() const override { return queue_.stats(); }
    [[nodiscard]] btq::queue_stats stats(std::size_t top_keys) const override {
        return queue_.stats(top_keys);
    }
    [[nodiscard]] const backend_options& options() const noexcept override { return options_; }
    [[nodiscard]] std::optional<redis_gate_stats> redis() const override { return gate_.redis(); }

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
    /// `executor`'s part of memory(), with the memory gate's holds.
    [[nodiscard]] memory_stats with_gate_holds(memory_stats executor) const {
        const memory_holds holds = gate_.held_for_memory(queue_);
        executor.held_for_memory = holds.held;
        executor.memory_holds_total = holds.total;
        return executor;
    }

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
                                               const request_share& share, Answered answered) {
        std::exception_ptr failure;
        try {
            auto operation = btq::async_submit(
                queue_, std::move(task),
                btq::submit_options{.stop = stop, .weight = share.weight, .key = share.key},
                boost::asio::use_awaitable);
            co_return answered(co_await std::move(operation));
        } catch (...) {
            failure = std::current_exception();
        }
        run_outcome outcome = outcome_of(failure);
        if (stop.stop_requested()) {
            outcome.result = run_outcome::kind::client_gone;
        } else if (btq::revocable_permit<typename queue_type::permit_type> &&
                   stopped_while_running(failure)) {
            // Nobody else stops a running request but the shutdown, which api tells apart.
            outcome.result = run_outcome::kind::lease_lost;
            outcome.message = "the request's cluster-wide permit was lost while it ran (Redis "
                              "unreachable or paused past the lease): it was stopped";
        } else if (outcome.result == run_outcome::kind::memory_limit) {
            outcome.message = memory_limit_message(options_);
        }
        co_return outcome;
    }

    backend_options options_;
    server_gate<Gate> gate_; // before the queue: it outlives the queue attached to it
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
/// the JSON says. A run stopped at its memory limit fails with memory_limit_reached; the adapter
/// counts those and keeps the largest peak resident size of every run (memory()).
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
                           [this, done = std::move(done),
                            waited](btq::task_result<btq::process_result>&& result) mutable {
                               judge(std::move(result), std::move(done), waited);
                           },
                           std::move(stop)));
    }

    void cancel_running() { inner_.cancel_running(); }

    [[nodiscard]] memory_stats memory() const noexcept {
        return memory_stats{.stopped_at_limit = stopped_at_limit_.load(std::memory_order_relaxed),
                            .peak_resident_bytes = peak_resident_.load(std::memory_order_relaxed)};
    }

  private:
    void judge(btq::task_result<btq::process_result>&& result,
               btq::completion<btq::process_result> done, std::chrono::nanoseconds waited) {
        if (!result.has_value()) { // it did not start (spawn_error, task_cancelled)
            done.set_exception(result.error());
            return;
        }
        btq::process_result& run = result.value();
        run.wait_time = waited;
        raise_to(peak_resident_, run.peak_resident_bytes);
        if (run.ending == btq::process_ending::memory_limit) {
            stopped_at_limit_.fetch_add(1, std::memory_order_relaxed);
            done.set_exception(std::make_exception_ptr(
                memory_limit_reached("schedule_worker went above its memory limit")));
        } else if (run.ending == btq::process_ending::timed_out) {
            done.set_exception(std::make_exception_ptr(
                btq::task_timeout("schedule_worker ran past the task timeout and was stopped")));
        } else if (run.ending == btq::process_ending::cancelled) {
            done.set_exception(std::make_exception_ptr(
                run_stopped("schedule_worker was stopped: its client went away or its "
                            "cluster-wide lease was lost")));
        } else if (run.ending == btq::process_ending::exited && answers_with_json(run.exit_code) &&
                   !run.stdout_truncated && !run.standard_output.empty()) {
            done.set_value(std::move(run));
        } else {
            done.set_exception(std::make_exception_ptr(worker_crashed(describe_failure(run))));
        }
    }

    std::atomic<std::uint64_t> stopped_at_limit_{0};
    std::atomic<std::uint64_t> peak_resident_{0};
    btq::subprocess_executor inner_; // last: its event thread goes first, calling judge() no more
};

/// --mode spawn: one schedule_worker process per request.
template <class Gate>
class spawn_backend final : public queued_backend<btq::command, checked_subprocess_executor, Gate> {
  public:
    explicit spawn_backend(const backend_options& options)
        : queued_backend<btq::command, checked_subprocess_executor, Gate>(options) {}

    [[nodiscard]] memory_stats memory() override {
        return this->with_gate_holds(this->queue_.executor().memory());
    }

    boost::asio::awaitable<run_outcome> run(const std::string& operation, std::string& body,
                                            const std::stop_token& stop,
                                            const request_share& share) override {
        const backend_options& options = this->options_;
        btq::command task;
        task.program = options.worker_program.string();
        task.arguments = {"--data-dir", options.data_dir.string(), operation};
        if (!options.database.empty()) {
            task.environment["SCHEDULE_DATABASE"] = options.database;
        }
        task.standard_input = std::move(body);
        task.timeout = options.task_timeout;
        task.kill_grace = std::chrono::milliseconds(500);
        if (options.task_memory_limit) {
            task.memory_limit = static_cast<std::size_t>(*options.task_memory_limit);
        }
        co_return co_await this->submit(task, stop, share, [](btq::process_result result) {
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
    if (!options.database.empty()) {
        pool.worker.environment["SCHEDULE_DATABASE"] = options.database;
    }
    pool.worker.kill_grace = std::chrono::milliseconds(500);
    pool.workers = options.pool_size;
    pool.task_timeout = options.task_timeout;
    pool.shutdown_grace = std::chrono::milliseconds(1000);
    if (options.task_memory_limit) {
        pool.memory_limit = static_cast<std::size_t>(*options.task_memory_limit);
    }
    return pool;
}

/// --mode pool: persistent schedule_worker processes.
template <class Gate>
class pool_backend final
    : public queued_backend<btq::worker_request, btq::worker_pool_executor, Gate> {
  public:
    explicit pool_backend(const backend_options& options)
        : queued_backend<btq::worker_request, btq::worker_pool_executor, Gate>(
              options, pool_options_for(options)) {}

    [[nodiscard]] memory_stats memory() override {
        return this->with_gate_holds(
            memory_stats{.stopped_at_limit = this->queue_.executor().stats().memory_limit_kills,
                         .peak_resident_bytes = peak_resident_.load(std::memory_order_relaxed)});
    }

    [[nodiscard]] std::optional<btq::worker_pool_stats> workers() override {
        return this->queue_.executor().stats();
    }

    boost::asio::awaitable<run_outcome> run(const std::string& operation, std::string& body,
                                            const std::stop_token& stop,
                                            const request_share& share) override {
        btq::worker_request task;
        task.operation = operation;
        task.body = std::move(body);
        co_return co_await this->submit(task, stop, share, [this](btq::worker_response response) {
            // The worker's peak since it started (VmHWM, one read of /proc/PID/status).
            if (const auto sample = btq::process::sample_memory(response.worker_pid)) {
                raise_to(peak_resident_, sample->peak_resident);
            }
            return run_outcome{.result = run_outcome::kind::answered,
                               .body = std::move(response.body),
                               .message = {},
                               .wait_time = response.wait_time,
                               .run_time = response.run_time};
        });
    }

  private:
    std::atomic<std::uint64_t> peak_resident_{0};
};

template <class Gate>
std::unique_ptr<backend> make_gated_backend(const backend_options& options) {
    if (options.mode == run_mode::spawn) {
        return std::make_unique<spawn_backend<Gate>>(options);
    }
    return std::make_unique<pool_backend<Gate>>(options);
}

} // namespace

bool redis_available() noexcept {
    return SCHEDULE_SERVER_REDIS != 0;
}

std::unique_ptr<backend> make_backend(const backend_options& options) {
    if (options.pool_size == 0) {
        throw std::invalid_argument("--pool-size must be at least 1");
    }
    if (options.redis) {
#if SCHEDULE_SERVER_REDIS
        if (options.min_available_memory || options.max_memory_pressure) {
            return make_gated_backend<memory_then_redis>(options);
        }
        return make_gated_backend<btq::redis_permits>(options);
#else
        throw std::invalid_argument("this server was built without Redis (no hiredis)");
#endif
    }
    if (options.min_available_memory || options.max_memory_pressure) {
        return make_gated_backend<btq::memory_gate>(options);
    }
    return make_gated_backend<btq::no_gate>(options);
}

} // namespace schedule_server
