// Spawn throughput: how fast btq::subprocess_executor starts and reaps child processes, against
// the raw system calls it is built on.
//
// Every benchmark spawns `/bin/true` and waits for it to end, in batches of `batch_size` spawns
// with at most C children alive at once (C is the benchmark argument). Three ways to run a batch:
//
//   btq          through a bounded_task_queue<command, subprocess_executor> with max_concurrency
//                C: submit with a callback that counts a latch down, then wait for the latch. The
//                queue is built once per benchmark run, before the timed loop.
//   posix_spawn  posix_spawn() + waitpid(pid): start C children, each watched by a pidfd; poll()
//                them, reap whichever ended and start a new child in its slot, until the batch
//                is done (children_in_flight). stdin/stdout/stderr go to /dev/null. glibc's
//                posix_spawn is clone(CLONE_VM | CLONE_VFORK): no page tables are copied. This is
//                the limit on the machine.
//   fork_exec    the same loop with fork() + execve() (+ _exit(127) if it fails).
//
// The benchmarks:
//
//   BM_SpawnPair/<C>          btq against posix_spawn, batch by batch: one iteration runs a btq
//                             batch and a posix_spawn batch back to back (`pair_batch_size`
//                             spawns each), in turn btq first and posix_spawn first,
//                             `pairs_per_run` iterations. Each pair gives a
//                             ratio, the btq batch's throughput over the posix_spawn batch's,
//                             taken a fraction of a second apart, so a burst of load from
//                             elsewhere on a shared machine slows both sides of a pair instead
//                             of one library's repetition. Counters: btq_us_per_spawn and
//                             raw_us_per_spawn (the median batch of each), btq_vs_raw (the median
//                             of the pairs' ratios; above 1, btq is faster), pairs, and
//                             btq_parent_cpu_us and raw_parent_cpu_us: the CPU time this process
//                             (every thread, not the children) spent per spawn, median batch.
//   BM_Spawn/fork_exec/<C>    one iteration is a fork_exec batch.
//   BM_Spawn/btq/<C>, BM_Spawn/posix_spawn/<C>
//                             one library alone, one batch an iteration, as BM_Spawn/fork_exec
//                             (registered, not run by bench/run_spawn_bench.sh by default).
//   BM_SpawnMemoryLimited/<mechanism>/<C>
//                             btq with a 256 MiB memory_limit on every child, held by a memory
//                             cgroup per child (cgroup; skipped where none can be made) or by
//                             RLIMIT_DATA (rlimit): what the limit adds to a spawn (registered,
//                             run with --benchmark_filter=BM_SpawnMemoryLimited).
//   BM_SpawnBigHeap/<lib>/4   the three at C = 4, from a parent holding 1 GiB of touched heap.
//                             fork() copies the page tables of that gigabyte on every spawn;
//                             posix_spawn (vfork) should not care.
//
// The big heap is allocated and touched once, before the first BM_SpawnBigHeap benchmark, and
// kept until the process exits, so every benchmark that runs after it in the same process sees
// it too. bench/run_spawn_bench.sh therefore runs the two families in two processes
// (--benchmark_filter), each with random interleaving of the repetitions; run in one process,
// the BM_SpawnBigHeap benchmarks come last (registered last) unless interleaving is on. Each run
// reports the heap it saw in the `heap_mib` counter, so a summary can tell a contaminated
// small-parent run.
//
// Counters of the one-library benchmarks: items_per_second (spawns per second,
// SetItemsProcessed) and us_per_spawn (wall-clock microseconds per spawn over the whole timed
// loop). With repetitions, a `min` aggregate joins mean/median/stddev/cv: on a shared machine the
// best repetition is the one least disturbed. Every child's exit status is checked; a failed spawn
// or a child that did not exit with 0 turns the run into an error.

#include <benchmark/benchmark.h>

#include <btq/btq.hpp>
#include <btq/executors/subprocess_executor.hpp>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <latch>
#include <optional>
#include <string>
#include <thread>
#include <vector>

// <unistd.h> declares it only with _GNU_SOURCE.
extern char** environ; // NOLINT(readability-redundant-declaration)

namespace {

/// Spawns per batch.
constexpr std::size_t batch_size = 400;
/// Spawns per batch of BM_SpawnPair: smaller, so that the two batches of a pair run closer
/// together in time (a few tenths of a second) and see the same load.
constexpr std::size_t pair_batch_size = 100;
/// Iterations (btq + posix_spawn pairs of batches) of one BM_SpawnPair run: even, so that each
/// library goes first equally often.
constexpr std::int64_t pairs_per_run = 40;
/// The child: starts, does nothing, exits 0.
constexpr const char* child_program = "/bin/true";
/// The parent's extra heap for BM_SpawnBigHeap.
constexpr std::size_t big_heap_bytes = std::size_t{1} << 30;
/// Pause after touching the big heap, before the first measurement from it.
constexpr auto settle_time = std::chrono::seconds(5);

/// MiB of touched big heap this process holds (0 until the first BM_SpawnBigHeap benchmark).
std::size_t big_heap_mib = 0;

/// Allocates 1 GiB once, writes to every page of it, and keeps it for the life of the process.
/// Transparent huge pages are turned off for it, so it is mapped with 4 KiB pages whatever the
/// system's THP setting: a long-running service's heap is mostly small pages, and that is what
/// makes fork() copy 262,144 page-table entries per spawn. False if the memory is not there.
bool hold_big_heap() {
    static char* const heap = [] {
        constexpr std::size_t page = 4096;
        auto* memory = static_cast<char*>(std::aligned_alloc(page, big_heap_bytes));
        if (memory == nullptr) {
            return memory;
        }
#ifdef MADV_NOHUGEPAGE
        static_cast<void>(::madvise(memory, big_heap_bytes, MADV_NOHUGEPAGE));
#endif
        std::memset(memory, 1, big_heap_bytes);
        benchmark::DoNotOptimize(memory);
        // Let the machine settle. On the 2-vCPU VM these benchmarks were written on, spawning
        // runs ~25% slower for a few seconds after the guest first touches a gigabyte, whatever
        // the library and even with posix_spawn, then returns to its small-parent speed: a
        // transient of the allocation, not a cost of the big parent.
        std::this_thread::sleep_for(settle_time);
        big_heap_mib = big_heap_bytes >> 20;
        return memory;
    }();
    benchmark::DoNotOptimize(heap);
    return heap != nullptr;
}

/// Sets items_per_second, us_per_spawn and heap_mib. `elapsed` is the wall time of the whole
/// timed loop, taken right before and right after it (the span of the benchmark's real time).
void report(benchmark::State& state, std::chrono::steady_clock::duration elapsed) {
    const auto spawns = state.iterations() * static_cast<std::int64_t>(batch_size);
    state.SetItemsProcessed(spawns);
    const double us = std::chrono::duration<double, std::micro>(elapsed).count();
    state.counters["us_per_spawn"] = spawns > 0 ? us / static_cast<double>(spawns) : 0.0;
    state.counters["heap_mib"] = static_cast<double>(big_heap_mib);
}

std::string errno_text(const char* what, int error_number) {
    return std::string(what) + ": " + std::strerror(error_number);
}

// ---- btq ----------------------------------------------------------------------------------------

using spawn_queue = btq::bounded_task_queue<btq::command, btq::subprocess_executor>;

btq::queue_options queue_options_for(const benchmark::State& state) {
    return {.max_concurrency = static_cast<std::size_t>(state.range(0)), .capacity = 100'000};
}

/// One batch of `spawns` through `queue`; counts those that failed or did not exit with 0.
void run_btq_batch(spawn_queue& queue, std::atomic<std::size_t>& failures,
                   std::size_t spawns = batch_size,
                   std::optional<std::size_t> memory_limit = std::nullopt) {
    std::latch done(static_cast<std::ptrdiff_t>(spawns));
    for (std::size_t i = 0; i < spawns; ++i) {
        btq::command cmd{.program = child_program};
        cmd.memory_limit = memory_limit;
        queue.submit(std::move(cmd), [&](btq::task_result<btq::process_result> result) noexcept {
            if (!result.has_value() || !result->succeeded()) {
                failures.fetch_add(1, std::memory_order_relaxed);
            }
            done.count_down();
        });
    }
    done.wait();
}

/// Turns failed btq spawns into the benchmark's error.
void report_failures(benchmark::State& state, const std::atomic<std::size_t>& failures) {
    if (const std::size_t failed = failures.load(); failed > 0) {
        state.SkipWithError(
            (std::to_string(failed) + " spawns failed or did not exit with 0").c_str());
    }
}

void spawn_btq(benchmark::State& state, bool big_heap) {
    if (big_heap && !hold_big_heap()) {
        state.SkipWithError("cannot allocate the 1 GiB heap");
        return;
    }
    spawn_queue queue(queue_options_for(state));
    std::atomic<std::size_t> failures{0};

    const auto start = std::chrono::steady_clock::now();
    for (auto _ : state) {
        run_btq_batch(queue, failures);
    }
    report(state, std::chrono::steady_clock::now() - start);
    report_failures(state, failures);
}

/// The batch with a 256 MiB memory limit on every child, held by `cgroup` (a memory cgroup per
/// child, where this process may make them) or RLIMIT_DATA: what the limit costs a spawn.
void spawn_btq_limited(benchmark::State& state, bool cgroup) {
    const btq::memory_limit_mechanism mechanism =
        btq::set_memory_cgroup_parent(cgroup ? std::optional<std::string>() : std::string());
    if (cgroup && mechanism == btq::memory_limit_mechanism::rlimit_and_watchdog) {
        state.SkipWithError("no memory cgroup can be made here");
        return;
    }
    state.SetLabel(std::string(btq::to_string(mechanism)));
    spawn_queue queue(queue_options_for(state));
    std::atomic<std::size_t> failures{0};
    const auto start = std::chrono::steady_clock::now();
    for (auto _ : state) {
        run_btq_batch(queue, failures, batch_size, std::size_t{256} << 20);
    }
    report(state, std::chrono::steady_clock::now() - start);
    report_failures(state, failures);
    (void)btq::set_memory_cgroup_parent(std::nullopt);
}

// ---- raw system calls ---------------------------------------------------------------------------

/// /dev/null, opened once (close-on-exec: the children get it only through dup2).
class dev_null {
  public:
    dev_null() : fd_(::open("/dev/null", O_RDWR | O_CLOEXEC)) {}
    dev_null(const dev_null&) = delete;
    dev_null& operator=(const dev_null&) = delete;
    ~dev_null() {
        if (fd_ >= 0) {
            ::close(fd_);
        }
    }
    [[nodiscard]] int fd() const noexcept { return fd_; }

  private:
    int fd_;
};

/// argv of the child, built once (argv points into `program`: not copyable).
struct child_arguments {
    child_arguments() = default;
    child_arguments(const child_arguments&) = delete;
    child_arguments& operator=(const child_arguments&) = delete;

    std::string program = child_program;
    char* argv[2] = {program.data(), nullptr};
};

/// posix_spawn() with stdin, stdout and stderr on /dev/null.
class posix_spawner {
  public:
    explicit posix_spawner(int null_fd) {
        ::posix_spawn_file_actions_init(&actions_);
        for (int target = 0; target <= 2; ++target) {
            ::posix_spawn_file_actions_adddup2(&actions_, null_fd, target);
        }
    }
    posix_spawner(const posix_spawner&) = delete;
    posix_spawner& operator=(const posix_spawner&) = delete;
    ~posix_spawner() { ::posix_spawn_file_actions_destroy(&actions_); }

    /// The child's pid, or -errno.
    pid_t spawn() {
        pid_t pid = 0;
        const int error =
            ::posix_spawn(&pid, arguments_.argv[0], &actions_, nullptr, arguments_.argv, environ);
        return error == 0 ? pid : -error;
    }

  private:
    posix_spawn_file_actions_t actions_{};
    child_arguments arguments_;
};

/// fork() + execve(), the child putting /dev/null on 0, 1 and 2 first.
class fork_exec_spawner {
  public:
    explicit fork_exec_spawner(int null_fd) : null_fd_(null_fd) {}

    /// The child's pid, or -errno.
    pid_t spawn() {
        const pid_t pid = ::fork();
        if (pid == 0) {
            // Only async-signal-safe calls between fork and exec.
            for (int target = 0; target <= 2; ++target) {
                if (::dup2(null_fd_, target) < 0) {
                    ::_exit(127);
                }
            }
            ::execve(arguments_.argv[0], arguments_.argv, environ);
            ::_exit(127);
        }
        return pid > 0 ? pid : -errno;
    }

  private:
    int null_fd_;
    child_arguments arguments_;
};

/// Waits for `pid`; true if it exited with 0.
bool reap(pid_t pid, std::string& error) {
    int status = 0;
    pid_t waited = 0;
    do {
        waited = ::waitpid(pid, &status, 0);
    } while (waited < 0 && errno == EINTR);
    if (waited < 0) {
        error = errno_text("waitpid", errno);
        return false;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        error = "a child did not exit with 0 (status " + std::to_string(status) + ")";
        return false;
    }
    return true;
}

/// At most `slots` children alive at once, each watched through a pidfd. poll() on them and
/// reap whichever child ends first: the raw loop never waits on one child while another has
/// already ended and its slot could be refilled (a FIFO ring of waitpid(pid) calls would, and
/// at C >= 2 that leaves a CPU idle). Still only these pids are waited for, never waitpid(-1).
class children_in_flight {
  public:
    explicit children_in_flight(std::size_t slots)
        : pids_(slots, 0), watched_(slots, pollfd{-1, POLLIN, 0}) {}
    children_in_flight(const children_in_flight&) = delete;
    children_in_flight& operator=(const children_in_flight&) = delete;
    ~children_in_flight() {
        for (std::size_t slot = 0; slot < watched_.size(); ++slot) {
            if (watched_[slot].fd >= 0) {
                std::string ignored;
                static_cast<void>(reap(pids_[slot], ignored));
                ::close(watched_[slot].fd);
            }
        }
    }

    /// One batch of `spawns` children. False, with `error` set, at the first failure; the
    /// children already started are still reaped.
    template <class Spawner>
    bool run_batch(Spawner& spawner, std::string& error, std::size_t spawns = batch_size) {
        const std::size_t slots = watched_.size();
        std::size_t started = 0;
        std::size_t alive = 0;
        bool ok = true;
        for (;;) {
            for (std::size_t slot = 0; ok && slot < slots && started < spawns; ++slot) {
                if (watched_[slot].fd < 0) {
                    ok = start(spawner, slot, error);
                    started += ok ? 1 : 0;
                    alive += ok ? 1 : 0;
                }
            }
            if (alive == 0) {
                return ok;
            }
            if (::poll(watched_.data(), static_cast<nfds_t>(slots), -1) < 0) {
                if (errno == EINTR) {
                    continue;
                }
                error = errno_text("poll", errno);
                return false; // the destructor reaps the children left
            }
            for (std::size_t slot = 0; slot < slots; ++slot) {
                pollfd& watched = watched_[slot];
                if (watched.fd >= 0 && watched.revents != 0) {
                    std::string reap_error;
                    if (!reap(pids_[slot], reap_error) && ok) {
                        error = reap_error;
                        ok = false;
                    }
                    ::close(watched.fd);
                    watched.fd = -1;
                    watched.revents = 0;
                    --alive;
                }
            }
        }
    }

  private:
    template <class Spawner>
    bool start(Spawner& spawner, std::size_t slot, std::string& error) {
        const pid_t pid = spawner.spawn();
        if (pid < 0) {
            error = errno_text("spawn", -pid);
            return false;
        }
        // Through syscall(): glibc 2.36 has no pidfd_open() wrapper in <sys/wait.h>.
        const auto pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0U));
        if (pidfd < 0) {
            error = errno_text("pidfd_open", errno);
            std::string ignored;
            static_cast<void>(reap(pid, ignored));
            return false;
        }
        pids_[slot] = pid;
        watched_[slot].fd = pidfd;
        return true;
    }

    std::vector<pid_t> pids_;
    std::vector<pollfd> watched_;
};

template <class Spawner>
void spawn_raw(benchmark::State& state, bool big_heap) {
    if (big_heap && !hold_big_heap()) {
        state.SkipWithError("cannot allocate the 1 GiB heap");
        return;
    }
    const dev_null null;
    if (null.fd() < 0) {
        state.SkipWithError(errno_text("open /dev/null", errno).c_str());
        return;
    }
    Spawner spawner(null.fd());
    children_in_flight children(static_cast<std::size_t>(state.range(0)));
    std::string error;
    bool ok = true;

    const auto start = std::chrono::steady_clock::now();
    for (auto _ : state) {
        if (!children.run_batch(spawner, error)) {
            ok = false;
            break;
        }
    }
    report(state, std::chrono::steady_clock::now() - start);
    if (!ok) {
        state.SkipWithError(error.c_str());
    }
}

// ---- btq against posix_spawn, batch by batch
// -----------------------------------------------------

double median(std::vector<double> values) {
    if (values.empty()) {
        return 0.0;
    }
    const auto middle = values.begin() + static_cast<std::ptrdiff_t>(values.size() / 2);
    std::nth_element(values.begin(), middle, values.end());
    if (values.size() % 2 == 1) {
        return *middle;
    }
    return (*middle + *std::max_element(values.begin(), middle)) / 2.0;
}

/// Microseconds per spawn of a BM_SpawnPair batch.
double microseconds_per_spawn(std::chrono::steady_clock::duration batch) {
    return std::chrono::duration<double, std::micro>(batch).count() /
           static_cast<double>(pair_batch_size);
}

/// CPU time (user + system) of this process so far, every thread of it, not its children (a
/// vfork child's time before its exec is the child's).
std::chrono::microseconds parent_cpu_time() {
    rusage usage{};
    ::getrusage(RUSAGE_SELF, &usage);
    const auto of = [](const timeval& t) {
        return std::chrono::seconds(t.tv_sec) + std::chrono::microseconds(t.tv_usec);
    };
    return of(usage.ru_utime) + of(usage.ru_stime);
}

void spawn_pair(benchmark::State& state) {
    const dev_null null;
    if (null.fd() < 0) {
        state.SkipWithError(errno_text("open /dev/null", errno).c_str());
        return;
    }
    spawn_queue queue(queue_options_for(state));
    std::atomic<std::size_t> failures{0};
    posix_spawner spawner(null.fd());
    children_in_flight children(static_cast<std::size_t>(state.range(0)));
    std::string error;
    bool ok = true;
    std::vector<double> btq_us;
    std::vector<double> raw_us;
    std::vector<double> ratios;
    std::vector<double> btq_cpu_us;
    std::vector<double> raw_cpu_us;

    const auto timed = [](std::vector<double>& wall, std::vector<double>& cpu, auto batch) {
        const auto cpu_start = parent_cpu_time();
        const auto start = std::chrono::steady_clock::now();
        batch();
        wall.push_back(microseconds_per_spawn(std::chrono::steady_clock::now() - start));
        cpu.push_back(microseconds_per_spawn(parent_cpu_time() - cpu_start));
    };
    const auto timed_btq = [&] {
        timed(btq_us, btq_cpu_us, [&] { run_btq_batch(queue, failures, pair_batch_size); });
    };
    const auto timed_raw = [&] {
        timed(raw_us, raw_cpu_us,
              [&] { ok = children.run_batch(spawner, error, pair_batch_size); });
    };
    bool btq_first = true;
    for (auto _ : state) {
        if (btq_first) {
            timed_btq();
            timed_raw();
        } else {
            timed_raw();
            timed_btq();
        }
        btq_first = !btq_first;
        if (!ok) {
            break;
        }
        ratios.push_back(raw_us.back() / btq_us.back()); // throughput: btq's over raw's
    }
    state.SetItemsProcessed(state.iterations() * 2 * static_cast<std::int64_t>(pair_batch_size));
    state.counters["btq_us_per_spawn"] = median(btq_us);
    state.counters["raw_us_per_spawn"] = median(raw_us);
    state.counters["btq_vs_raw"] = median(ratios);
    state.counters["pairs"] = static_cast<double>(ratios.size());
    state.counters["btq_parent_cpu_us"] = median(btq_cpu_us);
    state.counters["raw_parent_cpu_us"] = median(raw_cpu_us);
    if (!ok) {
        state.SkipWithError(error.c_str());
        return;
    }
    report_failures(state, failures);
}

// ---- registration -------------------------------------------------------------------------------

/// The smallest of the repetitions (for us_per_spawn: the best one).
double minimum(const std::vector<double>& values) {
    return values.empty() ? 0.0 : *std::min_element(values.begin(), values.end());
}

void register_benchmarks() {
    benchmark::RegisterBenchmark("BM_SpawnPair", &spawn_pair)
        ->Arg(1)
        ->Arg(2)
        ->Arg(4)
        ->Arg(8)
        ->Iterations(pairs_per_run)
        ->UseRealTime()
        ->ComputeStatistics("min", &minimum)
        ->Unit(benchmark::kMillisecond);
    struct library {
        const char* name;
        void (*function)(benchmark::State&, bool);
    };
    const library libraries[] = {
        {"btq", &spawn_btq},
        {"posix_spawn", &spawn_raw<posix_spawner>},
        {"fork_exec", &spawn_raw<fork_exec_spawner>},
    };
    for (const library& lib : libraries) {
        benchmark::RegisterBenchmark((std::string("BM_Spawn/") + lib.name).c_str(), lib.function,
                                     false)
            ->Arg(1)
            ->Arg(2)
            ->Arg(4)
            ->Arg(8)
            ->UseRealTime()
            ->ComputeStatistics("min", &minimum)
            ->Unit(benchmark::kMillisecond);
    }
    for (const bool cgroup : {false, true}) {
        benchmark::RegisterBenchmark(cgroup ? "BM_SpawnMemoryLimited/cgroup"
                                            : "BM_SpawnMemoryLimited/rlimit",
                                     &spawn_btq_limited, cgroup)
            ->Arg(1)
            ->Arg(4)
            ->UseRealTime()
            ->ComputeStatistics("min", &minimum)
            ->Unit(benchmark::kMillisecond);
    }
    // Last: the big heap, once allocated, stays for every benchmark that follows.
    for (const library& lib : libraries) {
        benchmark::RegisterBenchmark((std::string("BM_SpawnBigHeap/") + lib.name).c_str(),
                                     lib.function, true)
            ->Arg(4)
            ->UseRealTime()
            ->ComputeStatistics("min", &minimum)
            ->Unit(benchmark::kMillisecond);
    }
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
