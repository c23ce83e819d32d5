// The subprocess executor: run every executable in a directory as a child process, at most 4 at
// a time, each with a 1 s timeout and a 64 KiB output cap, and report how each one ended.
//
//   subprocess [DIRECTORY]
//
// Without an argument it runs the sample commands next to this source file (commands/): one that
// succeeds, one that fails, one that crashes, one that outlives its timeout and one that writes
// past the output cap.
#include <btq/btq.hpp>
#include <btq/executors/subprocess_executor.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <future>
#include <string>
#include <system_error>
#include <vector>

#ifndef BTQ_EXAMPLE_COMMANDS_DIR
#define BTQ_EXAMPLE_COMMANDS_DIR "commands"
#endif

namespace {

namespace fs = std::filesystem;

constexpr std::size_t concurrency = 4;
constexpr auto timeout = std::chrono::seconds(1);
constexpr std::size_t output_cap = std::size_t{64} << 10;

/// The executable regular files of `directory`, sorted by name.
std::vector<fs::path> executables_in(const fs::path& directory) {
    std::vector<fs::path> found;
    for (const fs::directory_entry& entry : fs::directory_iterator(directory)) {
        std::error_code error;
        if (entry.is_regular_file(error) && ::access(entry.path().c_str(), X_OK) == 0) {
            found.push_back(fs::absolute(entry.path()));
        }
    }
    std::sort(found.begin(), found.end());
    return found;
}

double milliseconds(std::chrono::nanoseconds duration) {
    return std::chrono::duration<double, std::milli>(duration).count();
}

void print_result(const std::string& name, const btq::process_result& result) {
    std::string status;
    if (result.ending == btq::process_ending::exited) {
        status = "exit " + std::to_string(result.exit_code);
    } else {
        status =
            "signal " + std::to_string(result.signal) + " (" + ::strsignal(result.signal) + ")";
    }
    std::printf("%-12s %-12s %-31s stdout %6zu B%s  stderr %4zu B%s  %8.1f ms\n", name.c_str(),
                btq::to_string(result.ending).data(), status.c_str(), result.standard_output.size(),
                result.stdout_truncated ? " (capped)" : "         ", result.standard_error.size(),
                result.stderr_truncated ? " (capped)" : "", milliseconds(result.run_time));
}

/// `total_errors` counts tasks that failed with an exception (a command that could not start);
/// a command that ran and then failed, crashed or was stopped still completed with a result.
void print_stats(const btq::queue_stats& stats, std::size_t succeeded) {
    std::printf("\n%zu of %llu commands succeeded (exit 0)\n", succeeded,
                static_cast<unsigned long long>(stats.total_processed));
    std::printf("queue: %llu processed, %llu task errors, at most %zu running and %zu waiting at "
                "once\n",
                static_cast<unsigned long long>(stats.total_processed),
                static_cast<unsigned long long>(stats.total_errors), stats.peak_active,
                stats.peak_queue_size);
    std::printf("       %llu had to wait for a slot; wait p50 %.1f ms, max %.1f ms; "
                "run p50 %.1f ms, max %.1f ms\n",
                static_cast<unsigned long long>(stats.total_queued),
                milliseconds(stats.wait_time.p50), milliseconds(stats.wait_time.max),
                milliseconds(stats.run_time.p50), milliseconds(stats.run_time.max));
}

} // namespace

int main(int argc, char** argv) {
    if (argc > 2 ||
        (argc == 2 && (std::strcmp(argv[1], "-h") == 0 || std::strcmp(argv[1], "--help") == 0))) {
        std::fprintf(stderr,
                     "usage: %s [DIRECTORY]\n  runs every executable in DIRECTORY "
                     "(default: %s)\n",
                     argv[0], BTQ_EXAMPLE_COMMANDS_DIR);
        return 2;
    }
    const fs::path directory = argc == 2 ? fs::path(argv[1]) : fs::path(BTQ_EXAMPLE_COMMANDS_DIR);

    std::vector<fs::path> programs;
    try {
        programs = executables_in(directory);
    } catch (const fs::filesystem_error& error) {
        std::fprintf(stderr, "cannot read %s: %s\n", directory.c_str(), error.what());
        return 1;
    }
    if (programs.empty()) {
        std::fprintf(stderr, "no executable files in %s\n", directory.c_str());
        return 1;
    }

    btq::bounded_task_queue<btq::command, btq::subprocess_executor> queue(
        {.max_concurrency = concurrency, .capacity = 16, .overflow = btq::overflow_policy::block});

    std::printf("running %zu commands from %s: %zu at a time, %lld s timeout, %zu KiB output "
                "cap\n\n",
                programs.size(), directory.c_str(), concurrency,
                static_cast<long long>(timeout.count()), output_cap >> 10);

    // Submit everything first: the first four start at once, the rest wait for a slot. With more
    // than 16 waiting, submit() blocks until one starts (overflow_policy::block).
    std::vector<std::future<btq::process_result>> results;
    results.reserve(programs.size());
    for (const fs::path& program : programs) {
        results.push_back(queue.submit(btq::command{
            .program = program.string(),
            .timeout = timeout,
            .kill_grace = std::chrono::milliseconds(500),
            .stdout_limit = output_cap,
            .stderr_limit = output_cap,
            .on_output_limit = btq::output_limit_action::kill,
        }));
    }

    std::size_t succeeded = 0;
    for (std::size_t i = 0; i < programs.size(); ++i) {
        const std::string name = programs[i].filename().string();
        try {
            const btq::process_result result = results[i].get();
            print_result(name, result);
            succeeded += result.succeeded() ? 1 : 0;
        } catch (const btq::spawn_error& error) {
            std::printf("%-12s could not start: %s\n", name.c_str(), error.what());
        } catch (const std::exception& error) {
            std::printf("%-12s failed: %s\n", name.c_str(), error.what());
        }
    }

    queue.drain();
    print_stats(queue.stats(), succeeded);
    return 0;
}
