// Throughput, latency and memory benchmarks for btq::bounded_task_queue against other in-process
// task runners: Boost.Asio's thread_pool, oneTBB's task_group (and concurrent_bounded_queue), a
// plain mutex + condition_variable pool, the thread_pool package (thread_pool::ThreadPool) and
// std::async.
//
// Every pool runs on 2 worker threads and every task is empty (it only signals). Pools and queues
// are built once per benchmark run, before the timed loop. Counters are in wall-clock time.
//
// Throughput (BM_FireAndForget, BM_Futures, BM_MixedLoad). One iteration submits a batch of
// 20,000 tasks split across P producer threads (P is the last part of the name: 1, 2 or 4), then
// waits until every task of the batch has run. The producer threads are started inside the
// iteration for every library alike (the same harness, run_producers()), so their start-up cost
// is part of every library's number. Counters: items_per_second (SetItemsProcessed) and
// ns_per_task (wall-clock ns of the whole timed loop / tasks).
//   BM_FireAndForget/<lib>/<P>  the outcome is not wanted: btq's completion callback, the other
//                               libraries' task itself, counts a latch down; the main thread waits
//                               on the latch (TBB: inside the arena, see tbb_fire_and_forget).
//   BM_Futures/<lib>/<P>        every submit returns a std::future<void>; the main thread get()s
//                               them all (std_async: a thread per task, batch of 2,000).
//   BM_MixedLoad/<variant>/<P>  btq only, the BM_FireAndForget harness; every 10th task of each
//                               producer carries submit_options: `plain` none (the same code as
//                               BM_FireAndForget/btq), `priority10` priority 1, `deadline10`
//                               submit_options::within(1 h) (made at the submit, as a caller
//                               would), `stop10` the token of a live std::stop_source that is
//                               never requested, `key10` a key (submit_options::key), the next
//                               of 8 string keys in turn, `weight10` weight 2 (with 2 slots, the
//                               whole bound: it waits for both running tasks and nothing
//                               overtakes it), `rate` no options but a queue with a rate limit
//                               that never holds a start back (queue_options::rate: 100 million
//                               starts a second, a burst of 1 million), so every task pays the
//                               token bucket's bookkeeping. The summary divides each by `plain`.
//
// BM_TrySubmitRefused/<lib>: the cost of a refused non-blocking submit. Before the timed loop the
// queue is made full: 1,024 waiting tasks and no worker taking any (btq: start_paused; cv_pool:
// both workers blocked in a task; TBB: concurrent_bounded_queue has no workers). One iteration is
// one call on one thread, which must be refused and must not move from the task (checked after
// the loop; the benchmark fails otherwise). Counter: ns_per_call. btq: try_submit(task, callback)
// (overflow reject); btq_future: try_submit(task), whose future is made before admission; tbb:
// concurrent_bounded_queue::try_push(T&&); cv_pool: a bounded try_post() (refuses when its deque
// holds 1,024 jobs).
//
// BM_SubmitToStart/<lib>: latency from submit to task start on an idle pool, one producer (the
// benchmark thread). One iteration takes 2,000 samples; a sample is: pause (latency_gap below,
// the same for every library, so that the workers go idle as between requests of light
// traffic), stamp steady_clock, submit one task; the task's first act is to stamp steady_clock
// and publish the stamp through an atomic the producer waits on. Counters over every sample of
// the run: p50_ns, p99_ns and mean_ns of (task stamp - submit stamp), which includes the submit
// call itself. The same adapters as BM_FireAndForget submit the task (post()).
//
// BM_MemoryPerWaiter/<callback|future>: btq's heap bytes per waiting task (bytes_per_waiter).

#include <benchmark/benchmark.h>

#include <btq/btq.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_future.hpp>

#include <oneapi/tbb/concurrent_queue.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

// thread_pool::ThreadPool::Submit uses std::result_of, deprecated in C++17.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#include <thread_pool/thread_pool.hpp>
#pragma GCC diagnostic pop

#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <future>
#include <latch>
#include <limits>
#include <mutex>
#include <numeric>
#include <stop_token>
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
/// BM_MixedLoad: every mixed_every-th task of a producer carries submit_options.
constexpr std::size_t mixed_every = 10;
/// BM_TrySubmitRefused: the waiting tasks that make each queue full.
constexpr std::size_t refused_capacity = 1'024;
/// BM_SubmitToStart: samples per benchmark iteration.
constexpr std::size_t latency_samples = 2'000;
/// BM_SubmitToStart: the pause before each sample, during which the workers find no work and
/// go to sleep. It must outlast every library's spin-before-sleep phase, or the benchmark
/// measures a worker that is still spinning instead of an idle one: btq's thread_executor
/// watches for work for 2,048 `pause` instructions (about 60 us on the AMD EPYC this was written
/// on, more on Intel cores where `pause` is slower) and oneTBB's workers spin and yield for a
/// while before they sleep. With pauses of 20-100 us, btq's and TBB's p50 came out far below
/// the others' (spinning workers; TBB still partly at 200 us); at 500 us all five looked like
/// idle pools in smoke runs (a quiet machine should confirm it). The producer
/// sleeps through the pause (sleep_for; the kernel's timer slack adds up to ~50 us), so that it
/// leaves both cores to the workers; a sample thus takes about 0.55 ms.
constexpr std::chrono::microseconds latency_gap{500};

struct empty_task {
    void operator()() const noexcept {}
};

/// The fire-and-forget task of the libraries that run plain callables: it only counts down.
struct count_down_task {
    std::latch* done;
    void operator()() const noexcept { done->count_down(); }
};

/// A btq completion callback for tasks whose outcome nobody wants.
struct ignore_result {
    void operator()(const btq::task_result<void>& /*result*/) const noexcept {}
};

std::int64_t steady_now_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

/// BM_SubmitToStart's task: its first act stamps the time it started, which also tells the
/// waiting producer that it started (the stamp is never 0).
struct start_stamp_task {
    std::atomic<std::int64_t>* started_ns;
    void operator()() const noexcept {
        started_ns->store(steady_now_ns(), std::memory_order_release);
        started_ns->notify_one();
    }
};

/// BM_TrySubmitRefused's task: it notes when it is moved from, so the benchmark can check that
/// every refused call left it untouched. Copyable, as std::function requires.
struct refusable_task {
    bool moved_from = false;

    refusable_task() = default;
    refusable_task(const refusable_task&) = default;
    refusable_task& operator=(const refusable_task&) = default;
    refusable_task(refusable_task&& other) noexcept { other.moved_from = true; }
    refusable_task& operator=(refusable_task&& other) noexcept {
        other.moved_from = true;
        return *this;
    }
    ~refusable_task() = default;
    void operator()() const noexcept {}
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

/// Sets items_per_second and `counter` (ns per item, ns_per_task by default). `elapsed` is the
/// wall time of the whole timed loop, taken right before and right after it (the same span as
/// the benchmark's real time).
void report_throughput(benchmark::State& state, std::size_t tasks_per_iteration,
                       std::chrono::steady_clock::duration elapsed,
                       const char* counter = "ns_per_task") {
    const auto tasks = state.iterations() * static_cast<std::int64_t>(tasks_per_iteration);
    state.SetItemsProcessed(tasks);
    const double ns = std::chrono::duration<double, std::nano>(elapsed).count();
    state.counters[counter] = tasks > 0 ? ns / static_cast<double>(tasks) : 0.0;
}

// ---- a plain mutex + condition_variable pool ------------------------------------------------

/// The baseline: one std::deque of std::function behind one mutex, one condition_variable.
/// post() always admits; try_post() is the bounded form, for BM_TrySubmitRefused.
class cv_pool {
  public:
    explicit cv_pool(std::size_t threads,
                     std::size_t capacity = std::numeric_limits<std::size_t>::max())
        : capacity_(capacity) {
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

    /// Admits `job` only while fewer than `capacity` jobs wait; a refused job is not moved from.
    template <class Job>
    bool try_post(Job&& job) {
        {
            std::lock_guard lock(mutex_);
            if (jobs_.size() >= capacity_) {
                return false;
            }
            jobs_.emplace_back(std::forward<Job>(job));
        }
        work_available_.notify_one();
        return true;
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
    std::size_t capacity_;
    bool stopping_ = false;
};

// ---- fire-and-forget adapters -----------------------------------------------------------------
// Each has produce(count, done): submit `count` tasks that together count `done` down by `count`;
// wait(done): return once the whole batch has run; and post(task): submit one task whose outcome
// nobody waits for (BM_SubmitToStart; produce() goes through it where the library's submit call
// is the same).

/// BM_MixedLoad's variants: what the submit_options of every mixed_every-th task are (options()
/// gets the producer's count of such tasks so far), and queue(), the options of the queue.
struct plain_mix {
    static constexpr bool mixed = false;
    static btq::queue_options queue() {
        return btq::queue_options{.max_concurrency = worker_threads, .capacity = 1 << 22};
    }
};
struct priority_mix : plain_mix {
    static constexpr bool mixed = true;
    static btq::submit_options options(std::size_t /*ordinal*/) {
        return btq::submit_options{.priority = 1};
    }
};
struct deadline_mix : plain_mix {
    static constexpr bool mixed = true;
    static btq::submit_options options(std::size_t /*ordinal*/) {
        return btq::submit_options::within(std::chrono::hours(1));
    }
};
struct stop_mix : plain_mix {
    static constexpr bool mixed = true;
    std::stop_source source; // never requested
    [[nodiscard]] btq::submit_options options(std::size_t /*ordinal*/) const {
        return btq::submit_options{.stop = source.get_token()};
    }
};
/// Keys as a server would hold them (client ids made once), short enough for the string's
/// inline buffer: copying one into the options allocates nothing.
struct key_mix : plain_mix {
    static constexpr bool mixed = true;
    static constexpr std::size_t keys = 8;
    std::vector<btq::task_key> names = [] {
        std::vector<btq::task_key> made;
        for (std::size_t i = 0; i < keys; ++i) {
            std::string name("client-");
            name.append(std::to_string(i));
            made.emplace_back(std::move(name));
        }
        return made;
    }();
    [[nodiscard]] btq::submit_options options(std::size_t ordinal) const {
        return btq::submit_options{.key = names[ordinal % keys]};
    }
};
struct weight_mix : plain_mix {
    static constexpr bool mixed = true;
    static btq::submit_options options(std::size_t /*ordinal*/) {
        return btq::submit_options{.weight = 2};
    }
};
/// No task carries options; the queue has a rate limit far above what it can start.
struct rate_mix {
    static constexpr bool mixed = false;
    static btq::queue_options queue() {
        btq::queue_options options = plain_mix::queue();
        options.rate = btq::rate_limit{
            .starts = 100'000'000, .per = std::chrono::seconds(1), .burst = 1'000'000};
        return options;
    }
};

/// btq. The queue holds `Task`: empty_task for the throughput benchmarks, where the completion
/// callback counts down (produce()), start_stamp_task for BM_SubmitToStart (post()). `Mix` adds
/// BM_MixedLoad's options; with plain_mix, produce() is BM_FireAndForget/btq's loop.
template <class Task = empty_task, class Mix = plain_mix>
struct btq_fire_and_forget {
    btq::bounded_task_queue<Task> queue{Mix::queue()};
    Mix mix;

    void produce(std::size_t count, std::latch& done) {
        for (std::size_t i = 0; i < count; ++i) {
            auto count_down = [latch = &done](btq::task_result<void> /*result*/) noexcept {
                latch->count_down();
            };
            if constexpr (Mix::mixed) {
                if (i % mixed_every == mixed_every - 1) {
                    queue.submit(empty_task{}, std::move(count_down), mix.options(i / mixed_every));
                    continue;
                }
            }
            queue.submit(empty_task{}, std::move(count_down));
        }
    }
    static void wait(std::latch& done) { done.wait(); }
    void post(Task task) { queue.submit(std::move(task), ignore_result{}); }
};

struct asio_fire_and_forget {
    boost::asio::thread_pool pool{worker_threads};

    ~asio_fire_and_forget() { pool.join(); }
    void produce(std::size_t count, std::latch& done) {
        for (std::size_t i = 0; i < count; ++i) {
            post(count_down_task{&done});
        }
    }
    static void wait(std::latch& done) { done.wait(); }
    template <class F>
    void post(F task) {
        boost::asio::post(pool, std::move(task));
    }
};

// oneTBB: a task_arena of concurrency 2 (one worker thread plus one slot for an external thread;
// TBB's global pool has hardware_concurrency - 1 = 1 worker on this machine). Each producer
// enters the arena once and spawns its share there; the main thread then waits inside the arena
// (group.wait()), taking the second slot and running tasks, which is how TBB is meant to be used.
// post() enqueues its one task into the arena (task_arena::enqueue of a task_group::defer handle,
// so group.wait() still covers it), TBB's call for an external thread that will not wait: a task
// that group.run() spawns from a thread that then leaves the arena is not guaranteed to start
// until some thread waits in the arena (BM_SubmitToStart hung that way). In BM_SubmitToStart
// nobody waits inside the arena, so only TBB's one worker thread can start the task (the other
// libraries have two idle workers).
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
    template <class F>
    void post(F task) {
        arena.enqueue(group.defer(std::move(task)));
    }
};

struct cv_pool_fire_and_forget {
    cv_pool pool{worker_threads};

    void produce(std::size_t count, std::latch& done) {
        for (std::size_t i = 0; i < count; ++i) {
            post(count_down_task{&done});
        }
    }
    static void wait(std::latch& done) { done.wait(); }
    template <class F>
    void post(F task) {
        pool.post(std::move(task));
    }
};

struct thread_pool_fire_and_forget {
    thread_pool::ThreadPool pool{worker_threads};

    void produce(std::size_t count, std::latch& done) {
        for (std::size_t i = 0; i < count; ++i) {
            post(count_down_task{&done});
        }
    }
    static void wait(std::latch& done) { done.wait(); }
    template <class F>
    void post(F task) {
        static_cast<void>(pool.Submit(std::move(task))); // the future is dropped
    }
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

// ---- submit-to-start latency ------------------------------------------------------------------

/// The element of `sorted` below which a fraction `p` of the samples lie (nearest rank).
std::int64_t percentile(const std::vector<std::int64_t>& sorted, double p) {
    const auto rank = static_cast<std::size_t>(p * static_cast<double>(sorted.size()) + 0.999999);
    return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
}

/// One producer (this thread), the library's fire-and-forget post() of one start_stamp_task per
/// sample; see latency_gap for the pause before each sample.
template <class Adapter>
void submit_to_start(benchmark::State& state) {
    std::atomic<std::int64_t> started_ns{0}; // outlives the adapter, so a late notify is safe
    Adapter adapter;
    std::vector<std::int64_t> latencies;
    latencies.reserve(latency_samples);
    auto sample = [&] {
        std::this_thread::sleep_for(latency_gap);
        started_ns.store(0, std::memory_order_relaxed);
        const std::int64_t submitted = steady_now_ns();
        adapter.post(start_stamp_task{&started_ns});
        std::int64_t started = 0;
        while ((started = started_ns.load(std::memory_order_acquire)) == 0) {
            started_ns.wait(0, std::memory_order_acquire);
        }
        return started - submitted;
    };
    static_cast<void>(sample()); // warm-up, not counted: TBB's arena starts its worker lazily
    for (auto _ : state) {
        for (std::size_t i = 0; i < latency_samples; ++i) {
            latencies.push_back(sample());
        }
    }
    std::sort(latencies.begin(), latencies.end());
    state.counters["p50_ns"] = static_cast<double>(percentile(latencies, 0.50));
    state.counters["p99_ns"] = static_cast<double>(percentile(latencies, 0.99));
    state.counters["mean_ns"] =
        static_cast<double>(std::accumulate(latencies.begin(), latencies.end(), std::int64_t{0})) /
        static_cast<double>(latencies.size());
}

// ---- refused non-blocking submit --------------------------------------------------------------
// Each adapter is full once constructed (refused_capacity tasks waiting, nothing taking them) and
// has try_submit(task) -> bool, which takes the task as an rvalue and must not move from it when
// it refuses.

/// btq, overflow reject, paused. `WithFuture` picks try_submit(task) over the callback form.
template <bool WithFuture>
struct btq_refused {
    btq::bounded_task_queue<refusable_task> queue{btq::queue_options{
        .max_concurrency = worker_threads,
        .capacity = refused_capacity,
        .overflow = btq::overflow_policy::reject,
        .start_paused = true,
    }};

    btq_refused() {
        for (std::size_t i = 0; i < refused_capacity; ++i) {
            queue.submit(refusable_task{}, ignore_result{});
        }
    }
    bool try_submit(refusable_task& task) {
        if constexpr (WithFuture) {
            return queue.try_submit(std::move(task)).has_value();
        } else {
            return queue.try_submit(std::move(task), ignore_result{});
        }
    }
};

/// oneTBB's bounded queue: only the admission check, no workers (TBB's task_group has no bound).
struct tbb_refused {
    tbb::concurrent_bounded_queue<refusable_task> queue;

    tbb_refused() {
        queue.set_capacity(static_cast<std::ptrdiff_t>(refused_capacity));
        for (std::size_t i = 0; i < refused_capacity; ++i) {
            queue.push(refusable_task{});
        }
    }
    bool try_submit(refusable_task& task) { return queue.try_push(std::move(task)); }
};

/// The cv pool with a bound; both workers are held inside a task until the adapter goes.
struct cv_pool_refused {
    std::latch holding{static_cast<std::ptrdiff_t>(worker_threads)};
    std::latch release{1};
    cv_pool pool{worker_threads, refused_capacity};

    cv_pool_refused() {
        for (std::size_t i = 0; i < worker_threads; ++i) {
            pool.post([this] {
                holding.count_down();
                release.wait();
            });
        }
        holding.wait(); // both workers are busy, so the deque only fills
        for (std::size_t i = 0; i < refused_capacity; ++i) {
            static_cast<void>(pool.try_post(refusable_task{}));
        }
    }
    cv_pool_refused(const cv_pool_refused&) = delete;
    cv_pool_refused& operator=(const cv_pool_refused&) = delete;
    cv_pool_refused(cv_pool_refused&&) = delete;
    cv_pool_refused& operator=(cv_pool_refused&&) = delete;
    ~cv_pool_refused() { release.count_down(); }
    bool try_submit(refusable_task& task) { return pool.try_post(std::move(task)); }
};

template <class Adapter>
void try_submit_refused(benchmark::State& state) {
    Adapter adapter;
    refusable_task task;
    const auto start = std::chrono::steady_clock::now();
    for (auto _ : state) {
        const bool admitted = adapter.try_submit(task);
        benchmark::DoNotOptimize(admitted);
        if (admitted) {
            state.SkipWithError("a submit to a full queue was admitted");
            break;
        }
    }
    const auto elapsed = std::chrono::steady_clock::now() - start;
    if (task.moved_from) {
        state.SkipWithError("a refused submit moved from the task");
    }
    report_throughput(state, 1, elapsed, "ns_per_call");
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
    auto add = [](const std::string& name, void (*function)(benchmark::State&),
                  benchmark::TimeUnit unit) {
        return benchmark::RegisterBenchmark(name.c_str(), function)->UseRealTime()->Unit(unit);
    };
    auto throughput = [&add](const std::string& name, void (*function)(benchmark::State&)) {
        add(name, function, benchmark::kMillisecond)->Arg(1)->Arg(2)->Arg(4);
    };
    throughput("BM_FireAndForget/btq", &fire_and_forget<btq_fire_and_forget<>>);
    throughput("BM_FireAndForget/asio", &fire_and_forget<asio_fire_and_forget>);
    throughput("BM_FireAndForget/tbb", &fire_and_forget<tbb_fire_and_forget>);
    throughput("BM_FireAndForget/cv_pool", &fire_and_forget<cv_pool_fire_and_forget>);
    throughput("BM_FireAndForget/thread_pool", &fire_and_forget<thread_pool_fire_and_forget>);

    throughput("BM_Futures/btq", &futures<btq_futures>);
    throughput("BM_Futures/thread_pool", &futures<thread_pool_futures>);
    throughput("BM_Futures/asio", &futures<asio_futures>);
    throughput("BM_Futures/std_async", &futures<std_async_futures>);

    throughput("BM_MixedLoad/plain", &fire_and_forget<btq_fire_and_forget<empty_task, plain_mix>>);
    throughput("BM_MixedLoad/priority10",
               &fire_and_forget<btq_fire_and_forget<empty_task, priority_mix>>);
    throughput("BM_MixedLoad/deadline10",
               &fire_and_forget<btq_fire_and_forget<empty_task, deadline_mix>>);
    throughput("BM_MixedLoad/stop10", &fire_and_forget<btq_fire_and_forget<empty_task, stop_mix>>);
    throughput("BM_MixedLoad/key10", &fire_and_forget<btq_fire_and_forget<empty_task, key_mix>>);
    throughput("BM_MixedLoad/weight10",
               &fire_and_forget<btq_fire_and_forget<empty_task, weight_mix>>);
    throughput("BM_MixedLoad/rate", &fire_and_forget<btq_fire_and_forget<empty_task, rate_mix>>);

    add("BM_TrySubmitRefused/btq", &try_submit_refused<btq_refused<false>>, benchmark::kNanosecond);
    add("BM_TrySubmitRefused/btq_future", &try_submit_refused<btq_refused<true>>,
        benchmark::kNanosecond);
    add("BM_TrySubmitRefused/tbb", &try_submit_refused<tbb_refused>, benchmark::kNanosecond);
    add("BM_TrySubmitRefused/cv_pool", &try_submit_refused<cv_pool_refused>,
        benchmark::kNanosecond);

    add("BM_SubmitToStart/btq", &submit_to_start<btq_fire_and_forget<start_stamp_task>>,
        benchmark::kMillisecond);
    add("BM_SubmitToStart/cv_pool", &submit_to_start<cv_pool_fire_and_forget>,
        benchmark::kMillisecond);
    add("BM_SubmitToStart/tbb", &submit_to_start<tbb_fire_and_forget>, benchmark::kMillisecond);
    add("BM_SubmitToStart/asio", &submit_to_start<asio_fire_and_forget>, benchmark::kMillisecond);
    add("BM_SubmitToStart/thread_pool", &submit_to_start<thread_pool_fire_and_forget>,
        benchmark::kMillisecond);

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
