// schedule_worker (examples/schedule_worker): the `schedules` listing of a database of 1,000
// schedules (3 items each), three ways:
//   BM_ScheduleWorker/once        one process per request: posix_spawn the worker in once mode,
//                                 write `{}` to its stdin, read all of stdout, wait for it
//   BM_ScheduleWorker/persistent  one persistent worker (--serve) behind
//                                 btq::worker_pool_executor: per request
//   BM_ScheduleWorker/in_process  schedule::service::handle in this process (the floor)
// and an import of a 1,000-item schedule, once and persistent. Each also on PostgreSQL
// (`..._postgresql`, a server the benchmark starts: tests/common/postgres_server.hpp) when the
// worker has its PostgreSQL store.
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

#if SCHEDULE_BENCH_POSTGRES
#include "../tests/common/postgres_server.hpp"
#endif

#ifndef SCHEDULE_WORKER_BINARY
#error "SCHEDULE_WORKER_BINARY (path of the schedule_worker executable) must be defined"
#endif

extern "C" char** environ; // NOLINT

namespace {

namespace fs = std::filesystem;

constexpr int schedule_count = 1000;

enum class store { sqlite, postgresql };

#if SCHEDULE_BENCH_POSTGRES
/// The PostgreSQL server of the run, started on first use.
btq_postgres_test::postgres_server& postgres() {
    static btq_postgres_test::postgres_server server;
    return server;
}
#endif

/// A new, empty database of `kind` for the folder `dir`: its --database URL ("" for SQLite in
/// the folder).
std::string new_database(store kind, const fs::path& dir) {
#if SCHEDULE_BENCH_POSTGRES
    if (kind == store::postgresql) {
        const std::string name = "bench_" + dir.filename().string().substr(19);
        postgres().create_database(name);
        return postgres().url(name);
    }
#endif
    (void)kind;
    (void)dir;
    return {};
}

/// A data folder (and its database) with 1,000 schedules, made once per run and store, and
/// removed at exit.
class bench_data {
  public:
    static const bench_data& of(store kind) {
        if (kind == store::sqlite) {
            static bench_data sqlite(store::sqlite);
            return sqlite;
        }
        static bench_data postgresql(store::postgresql);
        return postgresql;
    }
    [[nodiscard]] const fs::path& path() const { return path_; }
    [[nodiscard]] const std::string& url() const { return url_; }

  private:
    explicit bench_data(store kind) {
        const char* base = std::getenv("TMPDIR");
        std::string pattern = std::string(base != nullptr && *base != '\0' ? base : "/tmp") +
                              "/btq-schedule-bench-XXXXXX";
        if (::mkdtemp(pattern.data()) == nullptr) {
            throw std::system_error(errno, std::generic_category(), "mkdtemp");
        }
        path_ = pattern;
        url_ = new_database(kind, path_);
        schedule::service service(path_, "feed.m3u", url_);
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
    std::string url_;
};

/// An empty data folder and database of `kind`, for the imports.
class import_data {
  public:
    explicit import_data(store kind) {
        std::string pattern = (fs::temp_directory_path() / "btq-schedule-bench-XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) {
            throw std::system_error(errno, std::generic_category(), "mkdtemp");
        }
        path_ = pattern;
        url_ = new_database(kind, path_);
    }
    import_data(const import_data&) = delete;
    import_data& operator=(const import_data&) = delete;
    ~import_data() {
        std::error_code ignored;
        fs::remove_all(path_, ignored);
    }
    [[nodiscard]] const fs::path& path() const { return path_; }
    [[nodiscard]] const std::string& url() const { return url_; }

  private:
    fs::path path_;
    std::string url_;
};

/// An import request of one schedule of 1,000 items of 60 s.
std::string import_request() {
    std::string request = R"({"name":"Imported","channel":"bench","items":[)";
    for (int i = 0; i < 1000; ++i) {
        const int minutes = 8 * 60 + i; // from 2026-11-30 08:00 to 2026-12-01 00:39
        const bool next_day = minutes >= 24 * 60;
        char start[40];
        std::snprintf(start, sizeof start, "2026-%s-%sT%02d:%02d:00+01:00", next_day ? "12" : "11",
                      next_day ? "01" : "30", minutes / 60 % 24, minutes % 60);
        request += std::string(i == 0 ? "" : ",") + R"({"title":"Item )" + std::to_string(i) +
                   R"(","url":"http://example.org/)" + std::to_string(i) + R"(.mp4","start":")" +
                   start + R"(","duration":60})";
    }
    return request + "]}";
}

/// The worker's arguments for `dir` and `url`, then `last`.
std::vector<std::string> worker_arguments(const fs::path& dir, const std::string& url,
                                          const std::string& last) {
    std::vector<std::string> arguments{"--data-dir", dir.string()};
    if (!url.empty()) {
        arguments.insert(arguments.end(), {"--database", url});
    }
    arguments.push_back(last);
    return arguments;
}

/// Runs the worker in once mode: `{}` on stdin, returns all of stdout.
std::string run_once(const fs::path& data_dir, const std::string& url = {},
                     const std::string& operation = "schedules", const std::string& input = "{}") {
    int in[2];
    int out[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) {
        throw std::system_error(errno, std::generic_category(), "pipe2");
    }
    posix_spawn_file_actions_t actions;
    ::posix_spawn_file_actions_init(&actions);
    ::posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    ::posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    std::vector<std::string> arguments = worker_arguments(data_dir, url, operation);
    arguments.insert(arguments.begin(), SCHEDULE_WORKER_BINARY);
    std::vector<char*> argv;
    for (std::string& argument : arguments) {
        argv.push_back(argument.data());
    }
    argv.push_back(nullptr);
    pid_t pid = 0;
    const int rc = ::posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
    ::posix_spawn_file_actions_destroy(&actions);
    ::close(in[0]);
    ::close(out[1]);
    if (rc != 0) {
        throw std::system_error(rc, std::generic_category(), "posix_spawn");
    }
    for (std::size_t written = 0; written < input.size();) {
        const ssize_t n = ::write(in[1], input.data() + written, input.size() - written);
        if (n < 0 && errno != EINTR) {
            throw std::system_error(errno, std::generic_category(), "write");
        }
        written += n > 0 ? static_cast<std::size_t>(n) : 0;
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

using pool_queue = btq::bounded_task_queue<btq::worker_request, btq::worker_pool_executor>;

/// One persistent worker for `dir` and `url`.
std::unique_ptr<pool_queue> persistent_worker(const fs::path& dir, const std::string& url) {
    btq::worker_pool_options options{
        .worker = btq::command{.program = SCHEDULE_WORKER_BINARY,
                               .arguments = worker_arguments(dir, url, "--serve")},
        .workers = 1};
    return std::make_unique<pool_queue>(btq::queue_options{.max_concurrency = 1, .capacity = 16},
                                        options);
}

std::string ask(pool_queue& queue, const std::string& operation, const std::string& body) {
    return queue.submit(btq::worker_request{.operation = operation, .body = body}).get().body;
}

void BM_Once(benchmark::State& state, store kind) {
    const bench_data& data = bench_data::of(kind);
    check_answer(state, run_once(data.path(), data.url()));
    for (auto _ : state) {
        benchmark::DoNotOptimize(run_once(data.path(), data.url()));
    }
    state.SetItemsProcessed(state.iterations());
}

void BM_Persistent(benchmark::State& state, store kind) {
    const bench_data& data = bench_data::of(kind);
    const auto queue = persistent_worker(data.path(), data.url());
    check_answer(state, ask(*queue, "schedules", "{}"));
    for (auto _ : state) {
        benchmark::DoNotOptimize(ask(*queue, "schedules", "{}"));
    }
    state.SetItemsProcessed(state.iterations());
}

void check_imported(benchmark::State& state, const std::string& answer) {
    if (answer.find("\"status\":\"success\"") == std::string::npos) {
        state.SkipWithError(("the import failed: " + answer.substr(0, 200)).c_str());
    }
}

void BM_ImportOnce(benchmark::State& state, store kind) {
    const import_data data(kind);
    const std::string request = import_request();
    check_imported(state, run_once(data.path(), data.url(), "import-schedule", request));
    for (auto _ : state) {
        benchmark::DoNotOptimize(run_once(data.path(), data.url(), "import-schedule", request));
    }
    state.SetItemsProcessed(state.iterations());
}

void BM_ImportPersistent(benchmark::State& state, store kind) {
    const import_data data(kind);
    const std::string request = import_request();
    const auto queue = persistent_worker(data.path(), data.url());
    check_imported(state, ask(*queue, "import-schedule", request));
    for (auto _ : state) {
        benchmark::DoNotOptimize(ask(*queue, "import-schedule", request));
    }
    state.SetItemsProcessed(state.iterations());
}

void BM_InProcess(benchmark::State& state) {
    schedule::service service(bench_data::of(store::sqlite).path());
    check_answer(state, service.handle("schedules", "{}").json);
    for (auto _ : state) {
        benchmark::DoNotOptimize(service.handle("schedules", "{}"));
    }
    state.SetItemsProcessed(state.iterations());
}

} // namespace

// Every store and way of running, in the order of the tables: BM_ScheduleWorker/once,
// .../persistent, .../import_once, .../import_persistent, then the same ending in _postgresql.
[[maybe_unused]] const bool registered = [] {
    struct way {
        const char* name;
        void (*run)(benchmark::State&, store);
        benchmark::TimeUnit unit;
    };
    const way ways[] = {{"once", BM_Once, benchmark::kMillisecond},
                        {"persistent", BM_Persistent, benchmark::kMicrosecond},
                        {"import_once", BM_ImportOnce, benchmark::kMillisecond},
                        {"import_persistent", BM_ImportPersistent, benchmark::kMillisecond}};
    std::vector<std::pair<store, std::string>> stores{{store::sqlite, ""}};
    if (SCHEDULE_BENCH_POSTGRES != 0) {
        stores.emplace_back(store::postgresql, "_postgresql");
    }
    for (const auto& [kind, suffix] : stores) {
        for (const way& each : ways) {
            benchmark::RegisterBenchmark(
                ("BM_ScheduleWorker/" + std::string(each.name) + suffix).c_str(), each.run, kind)
                ->UseRealTime()
                ->Unit(each.unit);
        }
    }
    return true;
}();

BENCHMARK(BM_InProcess)
    ->Name("BM_ScheduleWorker/in_process")
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
