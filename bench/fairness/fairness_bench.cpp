// Per-key fairness (issue 17): how soon a light key's tasks start while a heavy key floods the
// queue. The scenario, the same for btq and for the npm peers of bench/fairness/node/:
//
//   total concurrency 4; the heavy key submits 2,000 tasks that each sleep ~1 ms; 20 ms after the
//   first heavy submit the light key submits 10 tasks. Measured: from the light key's first
//   submit to the start of its first task and of its 10th, and from the first heavy submit until
//   every task has finished.
//
// Modes: `keyed` (submit_options::key "heavy" and "light": waiting keys take turns) and `fifo`
// (no keys: the light tasks wait behind the flood, the baseline). A task sleeps
// (std::this_thread::sleep_for), so the figures do not depend on the CPU; its measured run time
// is reported too, since Node's setTimeout(1) and a thread's 1 ms sleep do not last the same.
//
//   btq_bench_fairness --mode keyed [--heavy 2000] [--light 10] [--task-ms 1] [--delay-ms 20]
//                      [--concurrency 4]
//
// Prints one JSON object (bench/fairness/summarize_fairness.py reads it).
// bench/run_fairness_bench.sh runs it with the peers.

#include <btq/btq.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <latch>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using bench_clock = std::chrono::steady_clock;

struct settings {
    std::string mode = "keyed";
    std::size_t heavy = 2'000;
    std::size_t light = 10;
    double task_ms = 1.0;
    double delay_ms = 20.0;
    std::size_t concurrency = 4;
};

/// Each task's start and end, in ns since the run's first submit; written by the task's worker,
/// read after every task has finished (the latch orders them).
struct stamps {
    std::vector<std::atomic<std::int64_t>> started;
    std::vector<std::atomic<std::int64_t>> ended;
    explicit stamps(std::size_t tasks) : started(tasks), ended(tasks) {}
};

struct sleep_task {
    stamps* record;
    std::size_t index;
    bench_clock::time_point origin;
    bench_clock::duration length;

    void operator()() const {
        record->started[index].store((bench_clock::now() - origin).count(),
                                     std::memory_order_relaxed);
        std::this_thread::sleep_for(length);
        record->ended[index].store((bench_clock::now() - origin).count(),
                                   std::memory_order_relaxed);
    }
};

double to_ms(std::int64_t ns) {
    return static_cast<double>(ns) / 1e6;
}

std::size_t parse_count(std::string_view name, const char* text) {
    char* end = nullptr;
    const unsigned long long value = std::strtoull(text, &end, 10);
    if (end == text || *end != '\0' || value == 0) {
        throw std::invalid_argument(std::string(name) + " wants a whole number above 0");
    }
    return static_cast<std::size_t>(value);
}

double parse_ms(std::string_view name, const char* text) {
    char* end = nullptr;
    const double value = std::strtod(text, &end);
    if (end == text || *end != '\0' || value < 0) {
        throw std::invalid_argument(std::string(name) + " wants a number of ms, at least 0");
    }
    return value;
}

settings parse(int argc, char** argv) {
    settings out;
    for (int at = 1; at < argc; ++at) {
        const std::string_view name = argv[at];
        if (at + 1 >= argc) {
            throw std::invalid_argument(std::string(name) + " needs a value");
        }
        const char* value = argv[++at];
        if (name == "--mode") {
            out.mode = value;
            if (out.mode != "keyed" && out.mode != "fifo") {
                throw std::invalid_argument("--mode is keyed or fifo");
            }
        } else if (name == "--heavy") {
            out.heavy = parse_count(name, value);
        } else if (name == "--light") {
            out.light = parse_count(name, value);
        } else if (name == "--task-ms") {
            out.task_ms = parse_ms(name, value);
        } else if (name == "--delay-ms") {
            out.delay_ms = parse_ms(name, value);
        } else if (name == "--concurrency") {
            out.concurrency = parse_count(name, value);
        } else {
            throw std::invalid_argument("unknown option " + std::string(name));
        }
    }
    return out;
}

int run(const settings& given) {
    const bool keyed = given.mode == "keyed";
    const std::size_t tasks = given.heavy + given.light;
    const auto length = std::chrono::duration_cast<bench_clock::duration>(
        std::chrono::duration<double, std::milli>(given.task_ms));
    const auto delay = std::chrono::duration_cast<bench_clock::duration>(
        std::chrono::duration<double, std::milli>(given.delay_ms));

    stamps record(tasks);
    std::latch finished(static_cast<std::ptrdiff_t>(tasks));
    std::atomic<std::size_t> failed{0};
    // The default executor, a thread_executor of max_concurrency threads.
    btq::bounded_task_queue<sleep_task> queue(
        btq::queue_options{.max_concurrency = given.concurrency, .capacity = tasks});
    const btq::task_key heavy_key = keyed ? btq::task_key("heavy") : btq::task_key();
    const btq::task_key light_key = keyed ? btq::task_key("light") : btq::task_key();
    auto on_done = [&finished, &failed](const btq::task_result<void>& result) noexcept {
        if (!result) {
            failed.fetch_add(1, std::memory_order_relaxed);
        }
        finished.count_down();
    };

    const bench_clock::time_point origin = bench_clock::now();
    for (std::size_t i = 0; i < given.heavy; ++i) {
        queue.submit(sleep_task{&record, i, origin, length}, on_done,
                     btq::submit_options{.key = heavy_key});
    }
    std::this_thread::sleep_until(origin + delay);
    const std::int64_t light_submitted = (bench_clock::now() - origin).count();
    for (std::size_t i = given.heavy; i < tasks; ++i) {
        queue.submit(sleep_task{&record, i, origin, length}, on_done,
                     btq::submit_options{.key = light_key});
    }
    finished.wait();
    const std::int64_t total = (bench_clock::now() - origin).count();

    std::int64_t light_first = record.started[given.heavy].load(std::memory_order_relaxed);
    std::int64_t light_last = light_first;
    std::int64_t run_sum = 0;
    for (std::size_t i = 0; i < tasks; ++i) {
        const std::int64_t started = record.started[i].load(std::memory_order_relaxed);
        run_sum += record.ended[i].load(std::memory_order_relaxed) - started;
        if (i >= given.heavy) {
            light_first = std::min(light_first, started);
            light_last = std::max(light_last, started);
        }
    }
    const btq::queue_stats stats = queue.stats();
    std::printf("{\"library\": \"btq\", \"mode\": \"%s\", \"concurrency\": %zu, \"heavy\": %zu, "
                "\"light\": %zu, \"task_ms\": %g, \"delay_ms\": %g, "
                "\"light_submitted_ms\": %.3f, \"light_first_start_ms\": %.3f, "
                "\"light_last_start_ms\": %.3f, \"total_ms\": %.3f, \"task_run_ms_mean\": %.4f, "
                "\"peak_active\": %zu, \"failed\": %zu}\n",
                given.mode.c_str(), given.concurrency, given.heavy, given.light, given.task_ms,
                given.delay_ms, to_ms(light_submitted), to_ms(light_first - light_submitted),
                to_ms(light_last - light_submitted), to_ms(total),
                to_ms(run_sum) / static_cast<double>(tasks), stats.peak_active,
                failed.load(std::memory_order_relaxed));
    return failed.load(std::memory_order_relaxed) == 0 ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
    try {
        return run(parse(argc, argv));
    } catch (const std::exception& error) {
        std::fprintf(stderr, "btq_bench_fairness: %s\n", error.what());
        return 2;
    }
}
