// Throughput and memory benchmarks for btq::bounded_task_queue against other in-process task
// runners: Boost.Asio's thread_pool, oneTBB's task_group, a plain mutex + condition_variable pool,
// the thread_pool package (thread_pool::ThreadPool) and std::async.
//
// Every throughput benchmark runs empty tasks on 2 worker threads. One benchmark iteration
// submits a batch of tasks split across P producer threads (P is the benchmark argument), then
// waits until every task of the batch has run. The producer threads are started inside the
// iteration for every library alike (the same harness, run_producers()), so their start-up cost
// is part of every library's number. Pools and queues are built once per benchmark run, before
// the timed loop.
//
// Names: BM_FireAndForget/<lib>/<P>, BM_Futures/<lib>/<P>, BM_MemoryPerWaiter/<callback|future>.
// Counters: items_per_second (SetItemsProcessed) and ns_per_task (wall-clock ns per task).

#include <benchmark/benchmark.h>

#include <btq/btq.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_future.hpp>

#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

// thread_pool::ThreadPool::Submit uses std::result_of, deprecated in C++17.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#include <thread_pool/thread_pool.hpp>
#pragma GCC diagnostic pop

#include <malloc.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <future>
#include <latch>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

constexpr std::size_t worker_threads = 2;
/// Tasks per benchmark iteration.
constexpr std::size_t batch_size = 20'000;
/// std::async starts one thread per task, so it gets a smaller batch (numbers are per task).
constexpr std::size_t async_batch_size = 2'000;
/// Waiters for BM_MemoryPerWaiter.
constexpr std::size_t memory_waiters = 1'000'000;

struct empty_task {
    void operator()() const noexcept {}
};

/// The fire-and-forget task of the libraries that run plain callables: it only counts down.
struct count_down_task {
    std::latch* done;
    void operator()() const noexcept { done->count_down(); }
};

/// How many of `total` tasks producer `index` of `producers` submits.
std::size_t share_of(std::size_t total, std::size_t producers, std::size_t index) {
    return total / producers + (index < total % producers ? 1 : 0);
}

/// The harness shared by every library: starts `producers` threads, producer i calls
/// `produce(i, count_i)` (the counts add up to `total`), and joins them.
template <class Produce>
void run_producers(std::size_t producers, std::size_t total, Produce& produce) {
    std::vector<std::thread> threads;
    threads.reserve(producers);
    for (std::size_t index = 0; index < producers; ++index) {
        threads.emplace_back([&produce, index, count = share_of(total, producers, index)] {
            produce(index, count);
        });
    }
    for (std::thread& thread : threads) {
        thread.join();
    }
}

/// Sets items_per_second and ns_per_task. `elapsed` is the wall time of the whole timed loop,
/// taken right before and right after it (the same span as the benchmark's real time).
void report_throughput(benchmark::State& state, std::size_t tasks_per_iteration,
                       std::chrono::steady_clock::duration elapsed) {
    const auto tasks = state.iterations() * static_cast<std::int64_t>(tasks_per_iteration);
    state.SetItemsProcessed(tasks);
    const double ns = std::chrono::duration<double, std::nano>(elapsed).count();
    state.counters["ns_per_task"] = tasks > 0 ? ns / static_cast<double>(tasks) : 0.0;
}

// ---- a plain mutex + condition_variable pool ------------------------------------------------

/// The baseline: one std::deque of std::function behind one mutex, one condition_variable.
class cv_pool {
  public:
    explicit cv_pool(std::size_t threads) {
        for (std::size_t i = 0; i < threads; ++i) {
            workers_.emplace_back([this] { work(); });
        }
    }
    cv_pool(const cv_pool&) = delete;
    cv_pool& operator=(const cv_pool&) = delete;
    ~cv_pool() {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        work_available_.notify_all();
        for (std::thread& worker : workers_) {
            worker.join();
        }
    }

    void post(std::function<void()> job) {
        {
            std::lock_guard lock(mutex_);
            jobs_.push_back(std::move(job));
        }
        work_available_.notify_one();
    }

  private:
    void work() {
        for (;;) {
            std::function<void()> job;
            {
                std::unique_lock lock(mutex_);
                work_available_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
                if (jobs_.empty()) {
                    return; // stopping, and every job has run
                }
                job = std::move(jobs_.front());
                jobs_.pop_front();
            }
            job();
        }
    }

    std::mutex mutex_;
    std::condition_variable work_available_;
    std::deque<std::function<void()>> jobs_;
    std::vector<std::thread> workers_;
    bool stopping_ = false;
};

// ---- fire-and-forget adapters -----------------------------------------------------------------
// Each has produce(count, done): submit `count` tasks that together count `done` down by `count`,
// and wait(done): return once the whole batch has run.

struct btq_fire_and_forget {
    btq::bounded_task_queue<empty_task> queue{
        btq::queue_options{.max_concurrency = worker_threads, .capacity = 1 << 22}};

    void produce(std::size_t count, std::latch& done) {
        for (std::size_t i = 0; i < count; ++i) {
            queue.submit(empty_task{}, [latch = &done](btq::task_result<void> /*result*/) noexcept {
                latch->count_down();
            });
        }
    }
    static void wait(std::latch& done) { done.wait(); }
};

struct asio_fire_and_forget {
    boost::asio::thread_pool pool{worker_threads};

    ~asio_fire_and_forget() { pool.join(); }
    void produce(std::size_t count, std::latch& done) {
        for (std::size_t i = 0; i < count; ++i) {
            boost::asio::post(pool, count_down_task{&done});
        }
    }
    static void wait(std::latch& done) { done.wait(); }
};

// oneTBB: a task_arena of concurrency 2 (one worker thread plus one slot for an external thread;
// TBB's global pool has hardware_concurrency - 1 = 1 worker on this machine). Each producer
// enters the arena once and spawns its share there; the main thread then waits inside the arena
// (group.wait()), taking the second slot and running tasks, which is how TBB is meant to be used.
struct tbb_fire_and_forget {
    tbb::task_arena arena{static_cast<int>(worker_threads)};
    tbb::task_group group;

    ~tbb_fire_and_forget() {
        arena.execute([this] { group.wait(); });
    }
    void produce(std::size_t count, std::latch& done) {
        arena.execute([&] {
            for (std::size_t i = 0; i < count; ++i) {
                group.run(count_down_task{&done});
            }
        });
    }
    void wait(std::latch& done) {
        arena.execute([this] { group.wait(); });
        done.wait(); // already zero: every task of the group has run
    }
};

struct cv_pool_fire_and_forget {
    cv_pool pool{worker_threads};

    void produce(std::size_t count, std::latch& done) {
        for (std::size_t i = 0; i < count; ++i) {
            pool.post(count_down_task{&done});
        }
    }
    static void wait(std::latch& done) { done.wait(); }
};

struct thread_pool_fire_and_forget {
    thread_pool::ThreadPool pool{worker_threads};

    void produce(std::size_t count, std::latch& done) {
        for (std::size_t i = 0; i < count; ++i) {
            static_cast<void>(pool.Submit(count_down_task{&done})); // the future is dropped
        }
    }
    static void wait(std::latch& done) { done.wait(); }
};

template <class Adapter>
void fire_and_forget(benchmark::State& state) {
    const auto producers = static_cast<std::size_t>(state.range(0));
    Adapter adapter;
    const auto start = std::chrono::steady_clock::now();
    for (auto _ : state) {
        std::latch done(static_cast<std::ptrdiff_t>(batch_size));
        auto produce = [&](std::size_t /*index*/, std::size_t count) {
            adapter.produce(count, done);
        };
        run_producers(producers, batch_size, produce);
        adapter.wait(done);
    }
    report_throughput(state, batch_size, std::chrono::steady_clock::now() - start);
}

// ---- future adapters --------------------------------------------------------------------------
// Each has submit() -> std::future<void> for one empty task. Producers keep their futures in
// their own vector (reserved before the timed loop); the main thread get()s them all.

struct btq_futures {
    static constexpr std::size_t batch = batch_size;
    btq::bounded_task_queue<empty_task> queue{
        btq::queue_options{.max_concurrency = worker_threads, .capacity = 1 << 22}};

    std::future<void> submit() { return queue.submit(empty_task{}); }
};

struct thread_pool_futures {
    static constexpr std::size_t batch = batch_size;
    thread_pool::ThreadPool pool{worker_threads};

    std::future<void> submit() { return pool.Submit(empty_task{}); }
};

// boost::asio::use_future(f) as the token of post() compiles cleanly with Boost 1.81: the
// returned future carries f's result.
struct asio_futures {
    static constexpr std::size_t batch = batch_size;
    boost::asio::thread_pool pool{worker_threads};

    ~asio_futures() { pool.join(); }
    std::future<void> submit() {
        return boost::asio::post(pool, boost::asio::use_future(empty_task{}));
    }
};

// A thread per task, so no 2-thread bound here; a smaller batch, reported per task.
struct std_async_futures {
    static constexpr std::size_t batch = async_batch_size;

    static std::future<void> submit() { return std::async(std::launch::async, empty_task{}); }
};

template <class Adapter>
void futures(benchmark::State& state) {
    const auto producers = static_cast<std::size_t>(state.range(0));
    constexpr std::size_t batch = Adapter::batch;
    Adapter adapter;
    std::vector<std::vector<std::future<void>>> futures(producers);
    for (std::size_t index = 0; index < producers; ++index) {
        futures[index].reserve(share_of(batch, producers, index));
    }
    const auto start = std::chrono::steady_clock::now();
    for (auto _ : state) {
        auto produce = [&](std::size_t index, std::size_t count) {
            std::vector<std::future<void>>& mine = futures[index];
            for (std::size_t i = 0; i < count; ++i) {
                mine.push_back(adapter.submit());
            }
        };
        run_producers(producers, batch, produce);
        for (std::vector<std::future<void>>& mine : futures) {
            for (std::future<void>& future : mine) {
                future.get();
            }
            mine.clear(); // keeps the capacity
        }
    }
    report_throughput(state, batch, std::chrono::steady_clock::now() - start);
}

// ---- memory per waiter ------------------------------------------------------------------------

/// Heap bytes per waiting task: a paused queue admits `memory_waiters` empty tasks and the heap
/// in use (mallinfo2().uordblks, all arenas) is compared before and after. The task is empty, so
/// the difference is the queue's per-waiter overhead (node, sink, and for futures the shared
/// state). The futures' own vector is reserved before the first measurement.
void memory_per_waiter(benchmark::State& state, bool with_future) {
    std::vector<std::future<void>> futures;
    if (with_future) {
        futures.reserve(memory_waiters);
    }
    btq::bounded_task_queue<empty_task> queue(btq::queue_options{
        .max_concurrency = worker_threads, .capacity = memory_waiters + 1, .start_paused = true});
    for (auto _ : state) {
        const std::size_t before = mallinfo2().uordblks;
        for (std::size_t i = 0; i < memory_waiters; ++i) {
            if (with_future) {
                futures.push_back(queue.submit(empty_task{}));
            } else {
                queue.submit(empty_task{}, [](btq::task_result<void> /*result*/) noexcept {});
            }
        }
        const std::size_t after = mallinfo2().uordblks;
        state.counters["bytes_per_waiter"] =
            (static_cast<double>(after) - static_cast<double>(before)) /
            static_cast<double>(memory_waiters);

        queue.resume();
        queue.drain();
        for (std::future<void>& future : futures) {
            future.get();
        }
        futures.clear();
        queue.pause();
    }
}

void register_benchmarks() {
    auto throughput = [](const std::string& name, void (*function)(benchmark::State&)) {
        benchmark::RegisterBenchmark(name.c_str(), function)
            ->Arg(1)
            ->Arg(2)
            ->Arg(4)
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
    };
    throughput("BM_FireAndForget/btq", &fire_and_forget<btq_fire_and_forget>);
    throughput("BM_FireAndForget/asio", &fire_and_forget<asio_fire_and_forget>);
    throughput("BM_FireAndForget/tbb", &fire_and_forget<tbb_fire_and_forget>);
    throughput("BM_FireAndForget/cv_pool", &fire_and_forget<cv_pool_fire_and_forget>);
    throughput("BM_FireAndForget/thread_pool", &fire_and_forget<thread_pool_fire_and_forget>);

    throughput("BM_Futures/btq", &futures<btq_futures>);
    throughput("BM_Futures/thread_pool", &futures<thread_pool_futures>);
    throughput("BM_Futures/asio", &futures<asio_futures>);
    throughput("BM_Futures/std_async", &futures<std_async_futures>);

    benchmark::RegisterBenchmark("BM_MemoryPerWaiter/callback", &memory_per_waiter, false)
        ->Iterations(1)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark("BM_MemoryPerWaiter/future", &memory_per_waiter, true)
        ->Iterations(1)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
}

} // namespace

int main(int argc, char** argv) {
    register_benchmarks();
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
        return 1;
    }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
