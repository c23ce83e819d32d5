// schedule_worker (examples/schedule_worker): the `schedules` listing of a database of 1,000
// schedules (3 items each), three ways:
//   BM_ScheduleWorker/once        one process per request: posix_spawn the worker in once mode,
//                                 write `{}` to its stdin, read all of stdout, wait for it
//   BM_ScheduleWorker/persistent  one persistent worker (--serve) behind
//                                 btq::worker_pool_executor: per request
//   BM_ScheduleWorker/in_process  schedule::service::handle in this process (the floor)
// Wall time per request; run with bench/run_schedule_worker_bench.sh (medians of repetitions).
#include <benchmark/benchmark.h>

#include <btq/btq.hpp>
#include <btq/executors/worker_pool_executor.hpp>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "service.hpp"

#ifndef SCHEDULE_WORKER_BINARY
#error "SCHEDULE_WORKER_BINARY (path of the schedule_worker executable) must be defined"
#endif

extern "C" char** environ; // NOLINT

namespace {

namespace fs = std::filesystem;

constexpr int schedule_count = 1000;

/// A data folder with 1,000 schedules, made once per run and removed at exit.
class bench_data {
  public:
    static const fs::path& path() {
        static bench_data instance;
        return instance.path_;
    }

  private:
    bench_data() {
        const char* base = std::getenv("TMPDIR");
        std::string pattern = std::string(base != nullptr && *base != '\0' ? base : "/tmp") +
                              "/btq-schedule-bench-XXXXXX";
        if (::mkdtemp(pattern.data()) == nullptr) {
            throw std::system_error(errno, std::generic_category(), "mkdtemp");
        }
        path_ = pattern;
        schedule::service service(path_);
        for (int i = 0; i < schedule_count; ++i) {
            std::string request = R"({"name":"Schedule )" + std::to_string(i) +
                                  R"(","channel":"ch)" + std::to_string(i % 20) + R"(","items":[)";
            for (int k = 0; k < 3; ++k) {
                request += std::string(k == 0 ? "" : ",") + R"({"title":"Item )" +
                           std::to_string(k) + R"(","url":"http://example.org/)" +
                           std::to_string(i) + "/" + std::to_string(k) +
                           R"(.mp4","start":"2026-11-30T0)" + std::to_string(k) +
                           R"(:00:00+01:00","duration":1800})";
            }
            request += "]}";
            const auto answer = service.handle("import-schedule", request);
            if (answer.exit_code != 0) {
                std::fprintf(stderr, "bench setup: import failed: %s\n", answer.json.c_str());
                std::abort();
            }
        }
    }
    ~bench_data() {
        std::error_code ignored;
        fs::remove_all(path_, ignored);
    }

    fs::path path_;
};

/// Runs the worker in once mode: `{}` on stdin, returns all of stdout.
std::string run_once(const fs::path& data_dir) {
    int in[2];
    int out[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) {
        throw std::system_error(errno, std::generic_category(), "pipe2");
    }
    posix_spawn_file_actions_t actions;
    ::posix_spawn_file_actions_init(&actions);
    ::posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    ::posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    std::string program = SCHEDULE_WORKER_BINARY;
    std::string flag = "--data-dir";
    std::string dir = data_dir.string();
    std::string operation = "schedules";
    char* argv[] = {program.data(), flag.data(), dir.data(), operation.data(), nullptr};
    pid_t pid = 0;
    const int rc = ::posix_spawn(&pid, argv[0], &actions, nullptr, argv, environ);
    ::posix_spawn_file_actions_destroy(&actions);
    ::close(in[0]);
    ::close(out[1]);
    if (rc != 0) {
        throw std::system_error(rc, std::generic_category(), "posix_spawn");
    }
    if (::write(in[1], "{}", 2) != 2) {
        throw std::system_error(errno, std::generic_category(), "write");
    }
    ::close(in[1]);
    std::string answer;
    char buffer[65536];
    for (;;) {
        const ssize_t n = ::read(out[0], buffer, sizeof buffer);
        if (n > 0) {
            answer.append(buffer, static_cast<std::size_t>(n));
        } else if (n == 0 || errno != EINTR) {
            break;
        }
    }
    ::close(out[0]);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        throw std::runtime_error("schedule_worker failed: " + answer);
    }
    return answer;
}

/// The answer lists every schedule (checked once per benchmark, outside the timing).
void check_answer(benchmark::State& state, const std::string& answer) {
    const std::string expected = "\"count\":" + std::to_string(schedule_count);
    if (answer.find(expected) == std::string::npos) {
        state.SkipWithError("the answer does not list 1,000 schedules");
    }
}

void BM_Once(benchmark::State& state) {
    const fs::path& dir = bench_data::path();
    check_answer(state, run_once(dir));
    for (auto _ : state) {
        benchmark::DoNotOptimize(run_once(dir));
    }
    state.SetItemsProcessed(state.iterations());
}

void BM_Persistent(benchmark::State& state) {
    const fs::path& dir = bench_data::path();
    btq::worker_pool_options options{
        .worker = btq::command{.program = SCHEDULE_WORKER_BINARY,
                               .arguments = {"--data-dir", dir.string(), "--serve"}},
        .workers = 1};
    btq::bounded_task_queue<btq::worker_request, btq::worker_pool_executor> queue(
        {.max_concurrency = 1, .capacity = 16}, options);
    // The first request starts the worker and opens the database: not measured.
    check_answer(
        state,
        queue.submit(btq::worker_request{.operation = "schedules", .body = "{}"}).get().body);
    for (auto _ : state) {
        benchmark::DoNotOptimize(
            queue.submit(btq::worker_request{.operation = "schedules", .body = "{}"}).get());
    }
    state.SetItemsProcessed(state.iterations());
}

void BM_InProcess(benchmark::State& state) {
    schedule::service service(bench_data::path());
    check_answer(state, service.handle("schedules", "{}").json);
    for (auto _ : state) {
        benchmark::DoNotOptimize(service.handle("schedules", "{}"));
    }
    state.SetItemsProcessed(state.iterations());
}

} // namespace

BENCHMARK(BM_Once)->Name("BM_ScheduleWorker/once")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Persistent)
    ->Name("BM_ScheduleWorker/persistent")
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_InProcess)
    ->Name("BM_ScheduleWorker/in_process")
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
