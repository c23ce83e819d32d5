// Worker pool against a process per task: the same trivial operation ("echo" of a short body)
// through btq::worker_pool_executor (persistent workers) and through
// btq::subprocess_executor (one process per task, the same program in its one-shot mode), at the
// same concurrency, for the C++ example worker and for the Python reference worker.
//
// Names: BM_Worker/<cpp|python>_<pool|process>/<concurrency>. Counter: us_per_task (wall µs).
#include <benchmark/benchmark.h>

#include <btq/btq.hpp>
#include <btq/executors/subprocess_executor.hpp>
#include <btq/executors/worker_pool_executor.hpp>

#include <chrono>
#include <cstddef>
#include <latch>
#include <string>
#include <string_view>

#ifndef BTQ_ECHO_WORKER
#error "BTQ_ECHO_WORKER (path of the example echo worker) must be defined by the build"
#endif
#ifndef BTQ_REFERENCE_WORKER
#error "BTQ_REFERENCE_WORKER (path of the Python reference worker) must be defined by the build"
#endif

namespace {

struct worker_program {
    std::string_view name;
    btq::command command; // the worker, as started by the pool
};

worker_program program(bool python) {
    if (python) {
        return {"python", btq::command{.program = "python3", .arguments = {BTQ_REFERENCE_WORKER}}};
    }
    return {"cpp", btq::command{.program = BTQ_ECHO_WORKER}};
}

/// Runs `tasks` tasks per iteration through `queue` (callbacks + latch) and reports µs per task.
template <class Queue, class MakeTask>
void run_batches(benchmark::State& state, Queue& queue, std::size_t tasks, MakeTask make_task) {
    std::size_t done_tasks = 0;
    const auto start = std::chrono::steady_clock::now();
    for (auto _ : state) {
        std::latch done(static_cast<std::ptrdiff_t>(tasks));
        for (std::size_t i = 0; i < tasks; ++i) {
            queue.submit(make_task(), [&done](auto result) noexcept {
                if (!result) {
                    std::abort(); // a failed task would make the numbers meaningless
                }
                done.count_down();
            });
        }
        done.wait();
        done_tasks += tasks;
    }
    const double us =
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
    state.SetItemsProcessed(static_cast<std::int64_t>(done_tasks));
    state.counters["us_per_task"] = done_tasks > 0 ? us / static_cast<double>(done_tasks) : 0.0;
}

void pool(benchmark::State& state, bool python) {
    const auto concurrency = static_cast<std::size_t>(state.range(0));
    btq::worker_pool_options options{.worker = program(python).command, .workers = concurrency};
    btq::bounded_task_queue<btq::worker_request, btq::worker_pool_executor> queue(
        {.max_concurrency = concurrency, .capacity = 100'000}, options);
    // Wait until every worker has said hello, so start-up is not measured.
    queue.submit({.operation = "echo", .body = "warm"}).get();
    while (queue.executor().stats().ready < concurrency) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    run_batches(state, queue, python ? 2'000 : 4'000,
                [] { return btq::worker_request{.operation = "echo", .body = "ping"}; });
}

void process_per_task(benchmark::State& state, bool python) {
    const auto concurrency = static_cast<std::size_t>(state.range(0));
    btq::command once = program(python).command;
    once.arguments.insert(once.arguments.end(), {"--once", "echo"});
    once.standard_input = "ping";
    btq::bounded_task_queue<btq::command, btq::subprocess_executor> queue(
        {.max_concurrency = concurrency, .capacity = 100'000});
    run_batches(state, queue, python ? 40 : 200, [&once] { return once; });
}

} // namespace

int main(int argc, char** argv) {
    for (const bool python : {false, true}) {
        const std::string name = python ? "python" : "cpp";
        benchmark::RegisterBenchmark(("BM_Worker/" + name + "_pool").c_str(),
                                     [python](benchmark::State& s) { pool(s, python); })
            ->Arg(1)
            ->Arg(4)
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark(("BM_Worker/" + name + "_process").c_str(),
                                     [python](benchmark::State& s) { process_per_task(s, python); })
            ->Arg(1)
            ->Arg(4)
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
    }
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
