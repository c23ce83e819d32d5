// Behaviour of btq::subprocess_executor: how children end, spawn errors, timeouts, stop requests,
// pipes, file descriptors, environment and arguments, reaping, signal state, shutdown and timings.
//
// Only programs of a Debian base system are used: /bin/sh, true, false, cat, sleep, env, head,
// yes. A child is observed through /proc (its parent, process group, state and start time).
#include <btq/executors/subprocess_executor.hpp>

#include <btq/btq.hpp>

#include <catch2/catch.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "../common/files.hpp"
#include "proc_support.hpp"
#include "test_support.hpp"

using namespace std::chrono_literals;
using btq_test::children_of;
using btq_test::eventually;
using btq_test::group_gone;
using btq_test::parse_stat;
using btq_test::pids_of;
using btq_test::process_info;
using btq_test::processes;
using btq_test::read_process;

namespace {

using process_queue = btq::bounded_task_queue<btq::command, btq::subprocess_executor>;
using steady = std::chrono::steady_clock;

/// How long a test waits for any one answer before it gives up (instead of hanging).
constexpr auto answer_limit = 60s;

/// A safety timeout for children that could otherwise run forever if the executor misbehaved:
/// the test then fails on the ending instead of hanging.
constexpr auto safety_timeout = std::chrono::milliseconds(30'000);

/// `/bin/sh -c script sh extra...`: inside the script, $1... are `extra`.
btq::command shell(std::string script, const std::vector<std::string>& extra = {}) {
    btq::command cmd{.program = "/bin/sh", .arguments = {"-c", std::move(script), "sh"}};
    cmd.arguments.insert(cmd.arguments.end(), extra.begin(), extra.end());
    return cmd;
}

/// Waits (bounded) for a future and returns its value; rethrows its error.
btq::process_result answer(std::future<btq::process_result>& future) {
    REQUIRE(future.wait_for(answer_limit) == std::future_status::ready);
    return future.get();
}
btq::process_result answer(std::future<btq::process_result>&& future) {
    return answer(future);
}

/// Hands `cmd` directly to `executor` (no queue), with `stop` as its stop token; its outcome.
std::future<btq::process_result> start(btq::subprocess_executor& executor, btq::command cmd,
                                       std::stop_token stop = {}) {
    auto [done, future] = btq_test::promised_completion<btq::process_result>(std::move(stop));
    executor.execute(std::move(cmd), std::move(done));
    return std::move(future);
}

/// A child stopped through its stop token, and how long after the stop request it was answered.
struct stopped_run {
    btq::process_result result;
    steady::duration answered_after;
};

/// Runs `/bin/sh -c script` on `executor` (no queue) with a stop token and `kill_grace`; once
/// the script has created the file named by its $1, requests the stop and waits for the answer.
stopped_run stop_once_started(btq::subprocess_executor& executor, std::string script,
                              std::chrono::milliseconds kill_grace);

/// Runs `cmd` directly on `executor` (no queue) and waits for its outcome.
btq::process_result run(btq::subprocess_executor& executor, btq::command cmd) {
    return answer(start(executor, std::move(cmd)));
}

/// The spawn_error a task failed with, or nothing if it ran (any other error propagates).
std::optional<btq::spawn_error> spawn_failure(std::future<btq::process_result> future) {
    REQUIRE(future.wait_for(answer_limit) == std::future_status::ready);
    try {
        const btq::process_result r = future.get();
        UNSCOPED_INFO("the task ran instead: ending " << static_cast<int>(r.ending)
                                                      << ", exit_code " << r.exit_code);
    } catch (const btq::spawn_error& error) {
        return error;
    }
    return std::nullopt;
}

std::string describe(const btq::process_result& r) {
    std::ostringstream out;
    out << "ending=" << btq::to_string(r.ending) << " exit_code=" << r.exit_code
        << " signal=" << r.signal << " pid=" << r.pid << " stdout(" << r.standard_output.size()
        << ")=" << r.standard_output.substr(0, 200) << " stderr(" << r.standard_error.size()
        << ")=" << r.standard_error.substr(0, 200);
    return out.str();
}

std::string group_listing(pid_t group) {
    std::ostringstream out;
    for (const auto& p : processes([group](const process_info& i) { return i.group == group; })) {
        out << p.pid << "(" << p.name << ") state " << p.state << " parent " << p.parent << "; ";
    }
    return out.str();
}

/// The value of `Field:` in a /proc/<pid>/status text, or "" if it is missing.
std::string status_field(const std::string& status, const std::string& field) {
    std::istringstream lines(status);
    std::string line;
    while (std::getline(lines, line)) {
        if (line.rfind(field + ":", 0) == 0) {
            const auto value = line.find_first_not_of(" \t", field.size() + 1);
            return value == std::string::npos ? std::string() : line.substr(value);
        }
    }
    return {};
}

unsigned long long status_mask(const std::string& status, const std::string& field) {
    const std::string value = status_field(status, field);
    REQUIRE_FALSE(value.empty());
    return std::stoull(value, nullptr, 16);
}

unsigned long long signal_bit(int signal_number) {
    return 1ULL << static_cast<unsigned>(signal_number - 1);
}

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        lines.push_back(line);
    }
    return lines;
}

/// `count` bytes of a pattern that is not periodic in any power of two.
std::string patterned_bytes(std::size_t count) {
    std::string bytes(count, '\0');
    for (std::size_t i = 0; i < count; ++i) {
        bytes[i] = static_cast<char>((i * 131 + i / 251) % 256);
    }
    return bytes;
}

/// What `yes | head -c count` writes.
std::string yes_output(std::size_t count) {
    std::string text;
    text.reserve(count + 1);
    while (text.size() < count) {
        text += "y\n";
    }
    text.resize(count);
    return text;
}

/// A fresh directory for one test, removed at its end.
class temp_directory : public test_files::temp_dir {
  public:
    temp_directory() : test_files::temp_dir("btq-subprocess") {}
};

/// Sets an environment variable for the scope, then restores it. Declare it before the
/// executor, so the environment changes only while no executor thread can read it.
class scoped_environment_variable {
  public:
    scoped_environment_variable(std::string name, const std::string& value)
        : name_(std::move(name)) {
        if (const char* old = std::getenv(name_.c_str())) {
            previous_ = old;
        }
        ::setenv(name_.c_str(), value.c_str(), 1);
    }
    scoped_environment_variable(const scoped_environment_variable&) = delete;
    scoped_environment_variable& operator=(const scoped_environment_variable&) = delete;
    ~scoped_environment_variable() {
        if (previous_) {
            ::setenv(name_.c_str(), previous_->c_str(), 1);
        } else {
            ::unsetenv(name_.c_str());
        }
    }

  private:
    std::string name_;
    std::optional<std::string> previous_;
};

/// Closes a file descriptor at the end of the scope.
class scoped_fd {
  public:
    explicit scoped_fd(int fd) noexcept : fd_(fd) {}
    scoped_fd(const scoped_fd&) = delete;
    scoped_fd& operator=(const scoped_fd&) = delete;
    ~scoped_fd() {
        if (fd_ >= 0) {
            ::close(fd_);
        }
    }
    [[nodiscard]] int get() const noexcept { return fd_; }

  private:
    int fd_;
};

stopped_run stop_once_started(btq::subprocess_executor& executor, std::string script,
                              std::chrono::milliseconds kill_grace) {
    const temp_directory dir;
    const std::string marker = (dir.path() / "started").string();
    btq::command cmd = shell(std::move(script), {marker});
    cmd.kill_grace = kill_grace;
    cmd.timeout = safety_timeout;
    std::stop_source stop;
    auto outcome = start(executor, std::move(cmd), stop.get_token());
    REQUIRE(eventually([&] { return std::filesystem::exists(marker); }));
    const auto requested = steady::now();
    stop.request_stop();
    btq::process_result result = answer(outcome);
    return {std::move(result), steady::now() - requested};
}

} // namespace

// ---- how a child ends -----------------------------------------------------------------------

TEST_CASE("a child's exit code is reported as exited with that code and its output is captured",
          "[subprocess]") {
    process_queue queue({.max_concurrency = 4, .capacity = 100});

    const btq::process_result three = answer(queue.submit(shell("echo hi; echo oops >&2; exit 3")));
    INFO(describe(three));
    CHECK(three.ending == btq::process_ending::exited);
    CHECK(three.exit_code == 3);
    CHECK(three.signal == 0);
    CHECK(three.standard_output == "hi\n");
    CHECK(three.standard_error == "oops\n");
    CHECK_FALSE(three.stdout_truncated);
    CHECK_FALSE(three.stderr_truncated);
    CHECK_FALSE(three.succeeded());

    const btq::process_result ok = answer(queue.submit(btq::command{.program = "/bin/true"}));
    CHECK(ok.ending == btq::process_ending::exited);
    CHECK(ok.exit_code == 0);
    CHECK(ok.succeeded());

    const btq::process_result one = answer(queue.submit(btq::command{.program = "/bin/false"}));
    CHECK(one.ending == btq::process_ending::exited);
    CHECK(one.exit_code == 1);
}

TEST_CASE("a child killed by a signal it did not get from the executor is reported as signaled "
          "with that signal",
          "[subprocess]") {
    process_queue queue({.max_concurrency = 4, .capacity = 100});

    // ulimit -c 0: no core file is left behind.
    const btq::process_result segv = answer(queue.submit(shell("ulimit -c 0; kill -SEGV $$")));
    INFO(describe(segv));
    CHECK(segv.ending == btq::process_ending::signaled);
    CHECK(segv.signal == SIGSEGV);
    CHECK(segv.exit_code == -1);
    CHECK_FALSE(segv.succeeded());

    const btq::process_result term = answer(queue.submit(shell("kill -TERM $$")));
    INFO(describe(term));
    CHECK(term.ending == btq::process_ending::signaled); // not timed_out: no timeout was set
    CHECK(term.signal == SIGTERM);
    CHECK(term.exit_code == -1);
}

// ---- spawn errors ---------------------------------------------------------------------------

TEST_CASE("a program that does not exist fails the task with spawn_error ENOENT naming the "
          "program",
          "[subprocess]") {
    temp_directory directory;
    process_queue queue({.max_concurrency = 4, .capacity = 100});

    const std::string missing = (directory.path() / "no-such-program").string();
    const auto by_path = spawn_failure(queue.submit(btq::command{.program = missing}));
    REQUIRE(by_path.has_value());
    CHECK(by_path->code().value() == ENOENT);
    CHECK(by_path->code().category() == std::generic_category());
    CHECK(by_path->program() == missing);

    // A bare name is looked up in PATH; not finding it there is ENOENT too.
    const std::string bare = "btq-no-such-program-4f1c9e";
    const auto by_name = spawn_failure(queue.submit(btq::command{.program = bare}));
    REQUIRE(by_name.has_value());
    CHECK(by_name->code().value() == ENOENT);
    CHECK(by_name->program() == bare);

    // Without a queue, the completion carries the same error.
    btq::subprocess_executor executor;
    CHECK_THROWS_MATCHES(run(executor, btq::command{.program = missing}), btq::spawn_error,
                         Catch::Predicate<btq::spawn_error>(
                             [](const btq::spawn_error& e) { return e.code().value() == ENOENT; }));
}

TEST_CASE("a file without execute permission fails the task with spawn_error EACCES",
          "[subprocess]") {
    temp_directory directory;
    const std::string script = (directory.path() / "not-executable").string();
    {
        std::ofstream out(script);
        out << "#!/bin/sh\nexit 0\n";
    }
    REQUIRE(::chmod(script.c_str(), 0644) == 0);
    process_queue queue({.max_concurrency = 4, .capacity = 100});

    const auto file = spawn_failure(queue.submit(btq::command{.program = script}));
    REQUIRE(file.has_value());
    CHECK(file->code().value() == EACCES);
    CHECK(file->program() == script);

    const std::string folder = directory.path().string();
    const auto dir = spawn_failure(queue.submit(btq::command{.program = folder}));
    REQUIRE(dir.has_value());
    CHECK(dir->code().value() == EACCES);
    CHECK(dir->program() == folder);
}

TEST_CASE("a working directory that does not exist fails the task with spawn_error ENOENT",
          "[subprocess]") {
    temp_directory directory;
    process_queue queue({.max_concurrency = 4, .capacity = 100});

    const auto missing = spawn_failure(queue.submit(btq::command{
        .program = "/bin/true", .working_directory = (directory.path() / "missing").string()}));
    REQUIRE(missing.has_value());
    CHECK(missing->code().value() == ENOENT);
    CHECK(missing->program() == "/bin/true");

    const std::string file = (directory.path() / "a-file").string();
    std::ofstream(file) << "x";
    const auto not_a_directory = spawn_failure(
        queue.submit(btq::command{.program = "/bin/true", .working_directory = file}));
    REQUIRE(not_a_directory.has_value());
    CHECK(not_a_directory->code().value() == ENOTDIR);
}

// ---- timeouts -------------------------------------------------------------------------------

TEST_CASE("a child past its timeout is stopped with SIGTERM and reported as timed_out long "
          "before it would have ended",
          "[subprocess]") {
    process_queue queue({.max_concurrency = 4, .capacity = 100});

    const auto start = steady::now();
    const btq::process_result r = answer(
        queue.submit(btq::command{.program = "/bin/sleep", .arguments = {"5"}, .timeout = 100ms}));
    const auto elapsed = steady::now() - start;
    INFO(describe(r));
    CHECK(r.ending == btq::process_ending::timed_out);
    CHECK(r.signal == SIGTERM);
    CHECK(r.exit_code == -1);
    CHECK(elapsed < 2s);
    CHECK(r.run_time >= 90ms);

    // A child that ends before its timeout just exits.
    const btq::process_result quick =
        answer(queue.submit(btq::command{.program = "/bin/true", .timeout = 5s}));
    INFO(describe(quick));
    CHECK(quick.ending == btq::process_ending::exited);
    CHECK(quick.exit_code == 0);
}

TEST_CASE("a child that ignores SIGTERM is killed with SIGKILL kill_grace after its timeout",
          "[subprocess]") {
    process_queue queue({.max_concurrency = 4, .capacity = 100});

    // The exec'd sleep inherits the ignored SIGTERM. The timeout leaves the shell ample time to
    // install the trap first.
    btq::command cmd = shell("trap '' TERM; exec /bin/sleep 5");
    cmd.timeout = 300ms;
    cmd.kill_grace = 200ms;
    const auto start = steady::now();
    const btq::process_result r = answer(queue.submit(std::move(cmd)));
    const auto elapsed = steady::now() - start;
    INFO(describe(r));
    CHECK(r.ending == btq::process_ending::timed_out);
    CHECK(r.signal == SIGKILL);
    CHECK(r.run_time >= 480ms); // the grace was granted
    CHECK(elapsed < 2s);
}

// ---- stop requests --------------------------------------------------------------------------

TEST_CASE("a stop requested on a running child's token ends its process group with SIGTERM "
          "well within the kill grace, reported as cancelled with the output it wrote",
          "[subprocess]") {
    btq::subprocess_executor executor;
    // A grandchild in the child's process group, and output written before the stop.
    const auto [r, elapsed] =
        stop_once_started(executor, "/bin/sleep 30 & echo started; : > \"$1\"; wait", 5s);
    INFO(describe(r) << "; group: " << group_listing(r.pid));
    CHECK(r.ending == btq::process_ending::cancelled);
    CHECK(r.signal == SIGTERM);
    CHECK(r.exit_code == -1);
    CHECK(r.standard_output == "started\n");
    CHECK(elapsed < 2s); // SIGTERM ended it; SIGKILL would have come only after 5 s
    CHECK_FALSE(read_process(r.pid).has_value()); // reaped before the answer
    CHECK(eventually([pid = r.pid] { return group_gone(pid); }, 2s));
    CHECK(executor.running() == 0);
}

TEST_CASE("a child that ignores SIGTERM is killed with SIGKILL kill_grace after its stop was "
          "requested",
          "[subprocess]") {
    btq::subprocess_executor executor;
    const auto [r, elapsed] =
        stop_once_started(executor, "trap '' TERM; : > \"$1\"; exec /bin/sleep 30", 300ms);
    INFO(describe(r));
    CHECK(r.ending == btq::process_ending::cancelled);
    CHECK(r.signal == SIGKILL);
    CHECK(elapsed >= 280ms); // the grace was granted
    CHECK(elapsed < 3s);
}

TEST_CASE("a command whose stop token is already stopped fails with task_cancelled inside "
          "execute and is never spawned",
          "[subprocess]") {
    btq::subprocess_executor executor;
    std::stop_source stop;
    stop.request_stop();
    // A program that does not exist: had the executor tried to start it, the answer would be
    // spawn_error (which execute() also delivers before it returns).
    auto outcome =
        start(executor, btq::command{.program = "/nonexistent/never-spawned"}, stop.get_token());
    REQUIRE(outcome.wait_for(0s) == std::future_status::ready);
    CHECK(executor.running() == 0);
    try {
        static_cast<void>(outcome.get());
        FAIL("a command stopped before it started cannot have run");
    } catch (const btq::task_cancelled& e) {
        CHECK(e.reason() == btq::not_run_reason::cancelled);
    }
    // The executor goes on as before.
    CHECK(run(executor, btq::command{.program = "/bin/true"}).succeeded());
}

TEST_CASE("stop requests racing with children that end by themselves answer every task exactly "
          "once, as exited or cancelled, and stop every child that would still run",
          "[subprocess]") {
    btq::subprocess_executor executor;
    constexpr std::size_t count = 40;
    std::vector<std::stop_source> stops(count);
    std::vector<std::future<btq::process_result>> outcomes;
    const auto begin = steady::now();
    for (std::size_t i = 0; i < count; ++i) {
        // Even: a child that ends at once, racing with its stop; odd: one that would run 30 s.
        btq::command cmd = i % 2 == 0 ? btq::command{.program = "/bin/true"}
                                      : btq::command{.program = "/bin/sleep", .arguments = {"30"}};
        cmd.timeout = safety_timeout;
        outcomes.push_back(start(executor, std::move(cmd), stops[i].get_token()));
        if (i > 0) {
            stops[i - 1].request_stop();
        }
    }
    stops[count - 1].request_stop();
    for (std::size_t i = 0; i < count; ++i) {
        CAPTURE(i);
        const btq::process_result r = answer(outcomes[i]); // at most once: a second answer throws
        INFO(describe(r));
        if (i % 2 == 0) {
            CHECK((r.succeeded() || r.ending == btq::process_ending::cancelled));
        } else {
            CHECK(r.ending == btq::process_ending::cancelled);
        }
    }
    CHECK(steady::now() - begin < 10s);
    CHECK(eventually([&] { return executor.running() == 0; }, 5s));
}

TEST_CASE("through a queue, submit_options::stop answers a waiting command with task_cancelled "
          "at once and it never starts, and stops a running one, reported as cancelled",
          "[subprocess]") {
    process_queue queue({.max_concurrency = 1, .capacity = 4});
    const temp_directory dir;
    const std::string running_marker = (dir.path() / "running").string();
    const std::string waiting_marker = (dir.path() / "waiting").string();
    std::stop_source stop_running;
    std::stop_source stop_waiting;
    btq::command blocker = shell(": > \"$1\"; exec /bin/sleep 30", {running_marker});
    blocker.timeout = safety_timeout;
    auto running =
        queue.submit(std::move(blocker), btq::submit_options{.stop = stop_running.get_token()});
    REQUIRE(eventually([&] { return std::filesystem::exists(running_marker); }));
    auto waiting = queue.submit(shell(": > \"$1\"", {waiting_marker}),
                                btq::submit_options{.stop = stop_waiting.get_token()});
    REQUIRE(queue.stats().queued == 1);

    stop_waiting.request_stop();
    REQUIRE(waiting.wait_for(answer_limit) == std::future_status::ready);
    const btq::queue_stats after = queue.stats();
    CHECK(after.queued == 0);
    CHECK(after.cancelled == 1);
    CHECK(after.active == 1); // answered without waiting for the slot
    CHECK_THROWS_AS(waiting.get(), btq::task_cancelled);

    stop_running.request_stop();
    const btq::process_result r = answer(running);
    INFO(describe(r));
    CHECK(r.ending == btq::process_ending::cancelled);
    CHECK(r.signal == SIGTERM);
    REQUIRE(queue.drain(answer_limit));
    CHECK_FALSE(std::filesystem::exists(waiting_marker)); // had it started, drain would wait
}

// ---- pipes ----------------------------------------------------------------------------------

TEST_CASE("a background grandchild holding stdout open does not delay the result and its "
          "process group is gone afterwards",
          "[subprocess]") {
    process_queue queue({.max_concurrency = 4, .capacity = 100});

    btq::command cmd = shell("/bin/sleep 100 & echo hi");
    cmd.timeout = safety_timeout;
    const auto start = steady::now();
    const btq::process_result r = answer(queue.submit(std::move(cmd)));
    const auto elapsed = steady::now() - start;
    INFO(describe(r));
    CHECK(r.ending == btq::process_ending::exited);
    CHECK(r.exit_code == 0);
    CHECK(r.standard_output == "hi\n");
    CHECK(elapsed < 2s);
    REQUIRE(r.pid > 0);
    INFO("left in group " << r.pid << ": " << group_listing(r.pid));
    CHECK(eventually([&] { return group_gone(r.pid); }, 5s));
}

TEST_CASE("4 MiB written to cat's stdin comes back identical on its stdout", "[subprocess]") {
    process_queue queue({.max_concurrency = 4, .capacity = 100});
    const std::string data = patterned_bytes(std::size_t{4} << 20);

    btq::command cmd{.program = "/bin/cat", .standard_input = data, .timeout = safety_timeout};
    const btq::process_result r = answer(queue.submit(std::move(cmd)));
    INFO("ending=" << btq::to_string(r.ending) << " exit_code=" << r.exit_code << " stdout size "
                   << r.standard_output.size());
    CHECK(r.succeeded());
    CHECK(r.standard_output.size() == data.size());
    CHECK(r.standard_output == data);
    CHECK_FALSE(r.stdout_truncated);
}

TEST_CASE("an empty standard_input gives the child end of file at once", "[subprocess]") {
    process_queue queue({.max_concurrency = 4, .capacity = 100});
    const btq::process_result r =
        answer(queue.submit(btq::command{.program = "/bin/cat", .timeout = 10s}));
    INFO(describe(r));
    CHECK(r.ending == btq::process_ending::exited);
    CHECK(r.exit_code == 0);
    CHECK(r.standard_output.empty());
}

TEST_CASE("8 MiB of stdin for a child that exits without reading it raises no SIGPIPE and the "
          "task completes",
          "[subprocess]") {
    process_queue queue({.max_concurrency = 4, .capacity = 100});
    const std::string data = patterned_bytes(std::size_t{8} << 20);

    // If the executor let a write to a closed pipe raise SIGPIPE, this process would die here.
    for (int attempt = 0; attempt < 3; ++attempt) {
        const btq::process_result r = answer(queue.submit(btq::command{
            .program = "/bin/true", .standard_input = data, .timeout = safety_timeout}));
        INFO("attempt " << attempt << ": " << describe(r));
        CHECK(r.ending == btq::process_ending::exited);
        CHECK(r.exit_code == 0);
    }

    // A child that reads a little and leaves.
    const btq::process_result head = answer(queue.submit(btq::command{
        .program = "/usr/bin/head",
        .arguments = {"-c", "10"},
        .standard_input = data,
        .timeout = safety_timeout,
    }));
    INFO(describe(head));
    CHECK(head.ending == btq::process_ending::exited);
    CHECK(head.exit_code == 0);
    CHECK(head.standard_output == data.substr(0, 10));
}

TEST_CASE("3 MB on stdout with stderr silent completes without deadlock and keeps every byte",
          "[subprocess]") {
    process_queue queue({.max_concurrency = 4, .capacity = 100});
    constexpr std::size_t size = 3'000'000;

    btq::command zeros{.program = "/usr/bin/head",
                       .arguments = {"-c", std::to_string(size), "/dev/zero"},
                       .timeout = safety_timeout};
    const btq::process_result r = answer(queue.submit(std::move(zeros)));
    INFO("ending=" << btq::to_string(r.ending) << " stdout size " << r.standard_output.size());
    CHECK(r.succeeded());
    CHECK(r.standard_output == std::string(size, '\0'));
    CHECK(r.standard_error.empty());
    CHECK_FALSE(r.stdout_truncated);

    btq::command text = shell("/usr/bin/yes | /usr/bin/head -c " + std::to_string(size));
    text.timeout = safety_timeout;
    const btq::process_result t = answer(queue.submit(std::move(text)));
    INFO("ending=" << btq::to_string(t.ending) << " stdout size " << t.standard_output.size());
    CHECK(t.succeeded());
    CHECK(t.standard_output == yes_output(size));
}

TEST_CASE("3 MB on stderr with stdout silent completes without deadlock and keeps every byte "
          "when stderr_limit allows it",
          "[subprocess]") {
    process_queue queue({.max_concurrency = 4, .capacity = 100});
    constexpr std::size_t size = 3'000'000;

    btq::command cmd = shell("/usr/bin/yes | /usr/bin/head -c " + std::to_string(size) + " >&2");
    cmd.stderr_limit = std::size_t{4} << 20;
    cmd.timeout = safety_timeout;
    const btq::process_result r = answer(queue.submit(std::move(cmd)));
    INFO("ending=" << btq::to_string(r.ending) << " stderr size " << r.standard_error.size());
    CHECK(r.succeeded());
    CHECK(r.standard_output.empty());
    CHECK(r.standard_error == yes_output(size));
    CHECK_FALSE(r.stderr_truncated);

    // Both streams at once, each well past a pipe's buffer.
    btq::command both =
        shell("/usr/bin/head -c " + std::to_string(size) + " /dev/zero >&2 & /usr/bin/head -c " +
              std::to_string(size) + " /dev/zero; wait");
    both.stderr_limit = std::size_t{4} << 20;
    both.timeout = safety_timeout;
    const btq::process_result b = answer(queue.submit(std::move(both)));
    INFO("ending=" << btq::to_string(b.ending) << " stdout size " << b.standard_output.size()
                   << " stderr size " << b.standard_error.size());
    CHECK(b.succeeded());
    CHECK(b.standard_output.size() == size);
    CHECK(b.standard_error.size() == size);
}

TEST_CASE("output past its limit with truncate keeps exactly the limit, flags it, and lets the "
          "child finish",
          "[subprocess]") {
    process_queue queue({.max_concurrency = 4, .capacity = 100});

    btq::command cmd = shell("/usr/bin/yes | /usr/bin/head -c 3000000");
    cmd.stdout_limit = 1000;
    cmd.timeout = safety_timeout;
    const btq::process_result r = answer(queue.submit(std::move(cmd)));
    INFO(describe(r));
    CHECK(r.ending == btq::process_ending::exited);
    CHECK(r.exit_code == 0);
    CHECK(r.standard_output == yes_output(1000));
    CHECK(r.stdout_truncated);
    CHECK_FALSE(r.stderr_truncated);

    btq::command err = shell("/usr/bin/head -c 5000 /dev/zero >&2");
    err.stderr_limit = 100;
    err.timeout = safety_timeout;
    const btq::process_result e = answer(queue.submit(std::move(err)));
    INFO(describe(e));
    CHECK(e.succeeded());
    CHECK(e.standard_error == std::string(100, '\0'));
    CHECK(e.stderr_truncated);
    CHECK_FALSE(e.stdout_truncated);

    // Exactly the limit is not more than the limit.
    btq::command exact{.program = "/usr/bin/head",
                       .arguments = {"-c", "1000", "/dev/zero"},
                       .timeout = safety_timeout,
                       .stdout_limit = 1000};
    const btq::process_result x = answer(queue.submit(std::move(exact)));
    INFO(describe(x));
    CHECK(x.succeeded());
    CHECK(x.standard_output.size() == 1000);
    CHECK_FALSE(x.stdout_truncated);
}

TEST_CASE("to_string names every process_ending as it is written in the enum", "[subprocess]") {
    STATIC_REQUIRE(btq::to_string(btq::process_ending::exited) == "exited");
    CHECK(btq::to_string(btq::process_ending::signaled) == "signaled");
    CHECK(btq::to_string(btq::process_ending::timed_out) == "timed_out");
    CHECK(btq::to_string(btq::process_ending::output_limit) == "output_limit");
}

TEST_CASE("output past its limit with on_output_limit kill stops the child and reports "
          "output_limit",
          "[subprocess]") {
    process_queue queue({.max_concurrency = 4, .capacity = 100});

    const auto start = steady::now();
    const btq::process_result r = answer(queue.submit(btq::command{
        .program = "/usr/bin/yes",
        .timeout = safety_timeout,
        .stdout_limit = 1000,
        .on_output_limit = btq::output_limit_action::kill,
    }));
    const auto elapsed = steady::now() - start;
    INFO(describe(r));
    CHECK(r.ending == btq::process_ending::output_limit);
    CHECK(r.signal != 0);
    CHECK(r.exit_code == -1);
    CHECK(r.standard_output.size() <= 1000);
    CHECK(r.standard_output == yes_output(r.standard_output.size()));
    CHECK(elapsed < 5s);

    btq::command err = shell("exec /usr/bin/yes >&2");
    err.timeout = safety_timeout;
    err.stderr_limit = 1000;
    err.on_output_limit = btq::output_limit_action::kill;
    const btq::process_result e = answer(queue.submit(std::move(err)));
    INFO(describe(e));
    CHECK(e.ending == btq::process_ending::output_limit);
    CHECK(e.standard_error.size() <= 1000);
}

// ---- file descriptors -----------------------------------------------------------------------

TEST_CASE("file descriptors opened without O_CLOEXEC in the parent are not open in the child",
          "[subprocess]") {
    // Deliberately inheritable: a plain open, a copy at a high number, and a pipe.
    const scoped_fd plain(::open("/dev/null", O_RDONLY)); // NOLINT(android-cloexec-open)
    REQUIRE(plain.get() >= 0);
    const scoped_fd high(::fcntl(plain.get(), F_DUPFD, 300));
    REQUIRE(high.get() >= 300);
    std::array<int, 2> ends{-1, -1};
    REQUIRE(::pipe(ends.data()) == 0); // NOLINT(android-cloexec-pipe)
    const scoped_fd read_end(ends[0]);
    const scoped_fd write_end(ends[1]);
    for (const int fd : {plain.get(), high.get(), read_end.get(), write_end.get()}) {
        REQUIRE(::fcntl(fd, F_GETFD) == 0); // no FD_CLOEXEC: only the executor can keep it out
    }

    // Meanwhile another thread keeps opening and closing inheritable descriptors.
    std::atomic<bool> churning{true};
    std::thread churn([&] {
        while (churning.load()) {
            const int fd = ::open("/dev/null", O_RDONLY); // NOLINT(android-cloexec-open)
            if (fd >= 0) {
                ::close(fd);
            }
        }
    });

    // The child lists every descriptor above 2 it has (lstat of /proc/self/fd/N opens none).
    const std::string last = std::to_string(std::max(1023, high.get()));
    const std::string lister = "n=3; while [ $n -le $1 ]; do "
                               "if [ -h /proc/self/fd/$n ]; then printf '%s ' $n; fi; "
                               "n=$((n + 1)); done";
    std::vector<btq::process_result> results;
    {
        process_queue queue({.max_concurrency = 4, .capacity = 100});
        std::vector<std::future<btq::process_result>> futures;
        for (int i = 0; i < 12; ++i) {
            btq::command cmd = shell(lister, {last});
            cmd.timeout = safety_timeout;
            futures.push_back(queue.submit(std::move(cmd)));
        }
        for (auto& future : futures) {
            results.push_back(answer(future));
        }
    }
    churning = false;
    churn.join();

    INFO("parent's inheritable descriptors: " << plain.get() << " " << high.get() << " "
                                              << read_end.get() << " " << write_end.get());
    for (const auto& r : results) {
        INFO(describe(r));
        CHECK(r.succeeded());
        CHECK(r.standard_output.empty()); // descriptors 0, 1 and 2 only
    }
}

// ---- environment, working directory, arguments ----------------------------------------------

TEST_CASE("with inherit the child gets the parent's environment with command::environment "
          "applied on top",
          "[subprocess]") {
    const scoped_environment_variable inherited("BTQ_TEST_INHERITED", "from the parent");
    const scoped_environment_variable overridden("BTQ_TEST_OVERRIDDEN", "old");
    process_queue queue({.max_concurrency = 4, .capacity = 100});

    btq::command print = shell("printf %s \"$BTQ_TEST_VAR\"");
    print.environment = {{"BTQ_TEST_VAR", "a b=c"}};
    const btq::process_result value = answer(queue.submit(std::move(print)));
    INFO(describe(value));
    CHECK(value.succeeded());
    CHECK(value.standard_output == "a b=c");

    btq::command env{.program = "/usr/bin/env",
                     .environment = {{"BTQ_TEST_VAR", "a b=c"}, {"BTQ_TEST_OVERRIDDEN", "new"}}};
    const btq::process_result listed = answer(queue.submit(std::move(env)));
    INFO(describe(listed));
    REQUIRE(listed.succeeded());
    const auto lines = lines_of(listed.standard_output);
    const auto count_named = [&](const std::string& name) {
        return std::count_if(lines.begin(), lines.end(), [&](const std::string& line) {
            return line.rfind(name + "=", 0) == 0;
        });
    };
    const auto has = [&](const std::string& line) {
        return std::find(lines.begin(), lines.end(), line) != lines.end();
    };
    CHECK(has("BTQ_TEST_VAR=a b=c"));
    CHECK(has("BTQ_TEST_INHERITED=from the parent"));
    CHECK(has("BTQ_TEST_OVERRIDDEN=new"));
    CHECK(count_named("BTQ_TEST_OVERRIDDEN") == 1);
    CHECK(count_named("BTQ_TEST_VAR") == 1);
}

TEST_CASE("with replace the child's environment is exactly command::environment", "[subprocess]") {
    const scoped_environment_variable inherited("BTQ_TEST_INHERITED", "from the parent");
    process_queue queue({.max_concurrency = 4, .capacity = 100});

    const btq::process_result only = answer(queue.submit(btq::command{
        .program = "/usr/bin/env",
        .environment_source = btq::environment_mode::replace,
        .environment = {{"ONLY", "1"}},
    }));
    INFO(describe(only));
    CHECK(only.succeeded());
    CHECK(only.standard_output == "ONLY=1\n");

    const btq::process_result empty = answer(queue.submit(btq::command{
        .program = "/usr/bin/env", .environment_source = btq::environment_mode::replace}));
    INFO(describe(empty));
    CHECK(empty.succeeded());
    CHECK(empty.standard_output.empty());
}

TEST_CASE("unset_environment removes an inherited variable from the child", "[subprocess]") {
    const scoped_environment_variable doomed("BTQ_TEST_UNSET_ME", "still here");
    process_queue queue({.max_concurrency = 4, .capacity = 100});
    const std::string script = "printf %s \"${BTQ_TEST_UNSET_ME-unset}\"";

    const btq::process_result kept = answer(queue.submit(shell(script)));
    INFO(describe(kept));
    CHECK(kept.standard_output == "still here");

    btq::command cmd = shell(script);
    cmd.unset_environment = {"BTQ_TEST_UNSET_ME"};
    const btq::process_result removed = answer(queue.submit(std::move(cmd)));
    INFO(describe(removed));
    CHECK(removed.succeeded());
    CHECK(removed.standard_output == "unset");
}

TEST_CASE("a program name without a slash is found in the parent's PATH even with a replaced "
          "environment",
          "[subprocess]") {
    // A program only the parent's PATH leads to (no default search path has it).
    temp_directory directory;
    const std::string probe = (directory.path() / "btq-path-probe").string();
    {
        std::ofstream out(probe);
        out << "#!/bin/sh\nprintf 'found:%s' \"$ONLY\"\n";
    }
    REQUIRE(::chmod(probe.c_str(), 0755) == 0);
    const char* old_path = std::getenv("PATH");
    const scoped_environment_variable path("PATH",
                                           directory.path().string() + ":" +
                                               (old_path != nullptr ? old_path : "/usr/bin:/bin"));
    process_queue queue({.max_concurrency = 4, .capacity = 100});

    const btq::process_result r = answer(queue.submit(btq::command{
        .program = "btq-path-probe",
        .environment_source = btq::environment_mode::replace,
        .environment = {{"ONLY", "1"}},
    }));
    INFO(describe(r));
    CHECK(r.succeeded());
    CHECK(r.standard_output == "found:1");

    const btq::process_result env = answer(queue.submit(btq::command{
        .program = "env",
        .environment_source = btq::environment_mode::replace,
        .environment = {{"ONLY", "1"}},
    }));
    INFO(describe(env));
    CHECK(env.succeeded());
    CHECK(env.standard_output == "ONLY=1\n");
}

TEST_CASE("working_directory sets the child's current directory", "[subprocess]") {
    temp_directory directory;
    process_queue queue({.max_concurrency = 4, .capacity = 100});

    btq::command tmp = shell("pwd -P");
    tmp.working_directory = "/tmp";
    const btq::process_result in_tmp = answer(queue.submit(std::move(tmp)));
    INFO(describe(in_tmp));
    CHECK(in_tmp.succeeded());
    CHECK(in_tmp.standard_output == std::filesystem::canonical("/tmp").string() + "\n");

    btq::command own = shell("pwd -P");
    own.working_directory = directory.path().string();
    const btq::process_result in_own = answer(queue.submit(std::move(own)));
    INFO(describe(in_own));
    CHECK(in_own.standard_output == std::filesystem::canonical(directory.path()).string() + "\n");
}

TEST_CASE("arguments with spaces, quotes, newlines, tabs, UTF-8, empty strings and leading "
          "dashes reach the child unchanged",
          "[subprocess]") {
    const std::vector<std::string> odd = {
        "two words",  "'single'",
        "\"double\"", "line\nbreak",
        "tab\there",  "UTF-8: \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80",
        "",           "-n",
        "--",         "-",
        "$HOME *",    "back\\slash",
        "",           std::string(10'000, 'x'),
    };
    process_queue queue({.max_concurrency = 4, .capacity = 100});

    // The shell prints each of its arguments followed by a NUL.
    const btq::process_result printed = answer(queue.submit(shell("printf '%s\\0' \"$@\"", odd)));
    std::string expected;
    for (const auto& argument : odd) {
        expected += argument;
        expected += '\0';
    }
    INFO(describe(printed));
    CHECK(printed.succeeded());
    CHECK(printed.standard_output == expected);

    // The kernel's view of the shell's whole argv, argv[0] included.
    const std::string script = "/bin/cat /proc/$$/cmdline";
    const btq::process_result cmdline = answer(queue.submit(shell(script, odd)));
    std::string whole = std::string("/bin/sh") + '\0' + "-c" + '\0' + script + '\0' + "sh" + '\0';
    whole += expected;
    INFO(describe(cmdline));
    CHECK(cmdline.succeeded());
    CHECK(cmdline.standard_output == whole);
}

// ---- reaping and bounds ---------------------------------------------------------------------

TEST_CASE("2,000 children through a queue of max_concurrency 4 all succeed, never exceed 4 at "
          "once and leave no zombie",
          "[subprocess]") {
    constexpr std::size_t bound = 4;
    constexpr int tasks = 2'000;
    const pid_t self = ::getpid();
    const std::set<pid_t> before = pids_of(children_of(self));

    std::atomic<int> succeeded{0};
    std::atomic<int> failed{0};
    std::atomic<bool> sampling{true};
    std::atomic<std::size_t> most_children{0};
    std::atomic<std::size_t> most_running{0};
    std::atomic<long> scans{0};
    {
        process_queue queue({.max_concurrency = bound, .capacity = tasks});
        std::thread sampler([&] {
            while (sampling.load()) {
                std::vector<process_info> seen;
                for (auto& child : children_of(self)) {
                    if (before.count(child.pid) == 0) {
                        seen.push_back(std::move(child));
                    }
                }
                // The scan is not atomic: a child seen early may be gone before a later one is
                // seen. Those still there after the scan were all alive together at its end.
                std::size_t together = 0;
                for (const auto& child : seen) {
                    const auto again = read_process(child.pid);
                    together += again && again->started == child.started ? 1 : 0;
                }
                if (together > most_children.load()) {
                    most_children.store(together);
                }
                const std::size_t now_running = queue.executor().running();
                if (now_running > most_running.load()) {
                    most_running.store(now_running);
                }
                scans.fetch_add(1);
            }
        });
        for (int i = 0; i < tasks; ++i) {
            // Every 100th child lives 50 ms, so that the sampler surely sees some alive (a
            // /bin/true may come and go between two scans of a slow, sanitized sampler).
            btq::command child{.program = "/bin/true"};
            if (i % 100 == 0) {
                child = btq::command{.program = "/bin/sleep", .arguments = {"0.05"}};
            }
            queue.submit(std::move(child), [&](btq::task_result<btq::process_result> r) noexcept {
                if (r && r->succeeded()) {
                    succeeded.fetch_add(1);
                } else {
                    failed.fetch_add(1);
                }
            });
        }
        queue.drain();
        sampling = false;
        sampler.join();
        CHECK(queue.executor().running() == 0);
    }

    std::vector<process_info> left;
    for (auto& child : children_of(self)) {
        if (before.count(child.pid) == 0) {
            left.push_back(std::move(child));
        }
    }
    std::ostringstream listing;
    for (const auto& child : left) {
        listing << child.pid << "(" << child.name << ") state " << child.state << "; ";
    }
    INFO("scans " << scans.load() << ", children left: " << listing.str());
    CHECK(succeeded.load() == tasks);
    CHECK(failed.load() == 0);
    CHECK(std::none_of(left.begin(), left.end(),
                       [](const process_info& child) { return child.state == 'Z'; }));
    CHECK(left.empty());
    CHECK(scans.load() > 10);
    CHECK(most_children.load() >= 1); // the sampler did see children
    CHECK(most_children.load() <= bound);
    CHECK(most_running.load() <= bound);
}

TEST_CASE("std::system run while the executor reaps its own children still gets its child's "
          "exit status",
          "[subprocess]") {
    std::atomic<bool> producing{true};
    std::atomic<int> succeeded{0};
    std::atomic<int> failed{0};
    std::vector<int> statuses;
    {
        process_queue queue({.max_concurrency = 4,
                             .capacity = 16,
                             .overflow = btq::overflow_policy::block,
                             .block_timeout = std::chrono::seconds(30)});
        std::thread producer([&] {
            while (producing.load()) {
                queue.submit(btq::command{.program = "/bin/true"},
                             [&](btq::task_result<btq::process_result> r) noexcept {
                                 if (r && r->succeeded()) {
                                     succeeded.fetch_add(1);
                                 } else {
                                     failed.fetch_add(1);
                                 }
                             });
            }
        });
        REQUIRE(eventually([&] { return succeeded.load() > 20; }));
        for (int i = 0; i < 30; ++i) {
            statuses.push_back(std::system("exit 7")); // NOLINT(cert-env33-c)
        }
        producing = false;
        producer.join();
        queue.drain();
    }
    for (const int status : statuses) {
        INFO("status " << status);
        REQUIRE(status != -1);
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 7);
    }
    CHECK(failed.load() == 0);
    CHECK(succeeded.load() > 20);
}

// ---- signal state ---------------------------------------------------------------------------

TEST_CASE("a child starts with no blocked and no ignored signals even when the parent blocks "
          "SIGUSR1 and ignores SIGUSR2",
          "[subprocess]") {
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigset_t old_mask;
    REQUIRE(::pthread_sigmask(SIG_BLOCK, &usr1, &old_mask) == 0);
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    struct sigaction old_action {};
    REQUIRE(::sigaction(SIGUSR2, &ignore, &old_action) == 0);
    struct restore_signals {
        sigset_t mask;
        struct sigaction action;
        ~restore_signals() {
            ::sigaction(SIGUSR2, &action, nullptr);
            ::pthread_sigmask(SIG_SETMASK, &mask, nullptr);
        }
    } const restore{old_mask, old_action};

    // The parent really is in that state (this thread's mask, the process's dispositions).
    const std::string own_status = read_text("/proc/thread-self/status");
    REQUIRE((status_mask(own_status, "SigBlk") & signal_bit(SIGUSR1)) != 0);
    REQUIRE((status_mask(own_status, "SigIgn") & signal_bit(SIGUSR2)) != 0);

    const btq::command status{.program = "/bin/cat", .arguments = {"/proc/self/status"}};
    std::vector<btq::process_result> results;
    {
        // Created now, so the executor's own threads inherit the blocked SIGUSR1 too.
        btq::subprocess_executor executor;
        results.push_back(run(executor, status));
        process_queue queue({.max_concurrency = 2, .capacity = 10});
        results.push_back(answer(queue.submit(btq::command(status))));
    }
    for (const auto& r : results) {
        INFO(describe(r));
        REQUIRE(r.succeeded());
        INFO("SigBlk " << status_field(r.standard_output, "SigBlk") << " SigIgn "
                       << status_field(r.standard_output, "SigIgn"));
        CHECK(status_mask(r.standard_output, "SigBlk") == 0);
        // Split so a failure says which part is wrong: signals a program can see and set, and
        // 32 and 33, which glibc keeps for itself (a posix_spawn child of a glibc program gets
        // them ignored unless the spawner asks for their default explicitly).
        const unsigned long long glibc_internal = signal_bit(32) | signal_bit(33);
        CHECK((status_mask(r.standard_output, "SigIgn") & ~glibc_internal) == 0);
        CHECK((status_mask(r.standard_output, "SigIgn") & glibc_internal) == 0);
    }
}

// ---- shutdown -------------------------------------------------------------------------------

TEST_CASE("destroying the executor with children running kills and reaps them and answers "
          "every completion once",
          "[subprocess]") {
    const pid_t self = ::getpid();
    const std::set<pid_t> before = pids_of(children_of(self));
    constexpr std::size_t count = 3;
    std::array<std::atomic<int>, count> calls{};
    std::mutex outcomes_mutex;
    std::array<std::string, count> outcomes;

    std::optional<btq::subprocess_executor> executor(std::in_place);
    const auto start_child = [&](std::size_t index, btq::command cmd) {
        executor->execute(std::move(cmd), btq::completion<btq::process_result>::from(
                                              [&, index](btq::task_result<btq::process_result> r) {
                                                  calls[index].fetch_add(1);
                                                  std::lock_guard lock(outcomes_mutex);
                                                  outcomes[index] =
                                                      r ? describe(*r) : std::string("an error");
                                              }));
    };
    start_child(0, btq::command{.program = "/bin/sleep", .arguments = {"30"}});
    start_child(1, btq::command{.program = "/bin/sleep", .arguments = {"30"}});
    btq::command stubborn = shell("trap '' TERM; exec /bin/sleep 30");
    stubborn.kill_grace = 300ms;
    start_child(2, std::move(stubborn));

    // Wait until all three run /bin/sleep (the stubborn one past its exec, SIGTERM ignored).
    std::vector<pid_t> pids;
    const auto sleepers = [&] {
        pids.clear();
        for (const auto& child : children_of(self)) {
            if (before.count(child.pid) == 0 && child.name == "sleep" && child.state != 'Z') {
                pids.push_back(child.pid);
            }
        }
        return pids.size() == count;
    };
    REQUIRE(eventually(sleepers));
    CHECK(executor->running() == count);

    const auto start = steady::now();
    executor.reset();
    const auto elapsed = steady::now() - start;

    CHECK(elapsed < 5s);
    for (std::size_t i = 0; i < count; ++i) {
        std::lock_guard lock(outcomes_mutex);
        INFO("child " << i << ": " << outcomes[i]);
        CHECK(calls[i].load() == 1);
    }
    for (const pid_t pid : pids) {
        INFO("pid " << pid << ": " << group_listing(pid));
        // Our own children: once reaped, nothing of them is left, not even a zombie.
        CHECK((::kill(-pid, 0) == -1 && errno == ESRCH));
        CHECK((::kill(pid, 0) == -1 && errno == ESRCH));
    }
}

// ---- what a result carries ------------------------------------------------------------------

TEST_CASE("a result carries the child's pid, its spawn_time and a run_time at least as long as "
          "it ran",
          "[subprocess]") {
    btq::subprocess_executor executor;
    const btq::process_result r =
        run(executor, btq::command{.program = "/bin/sleep", .arguments = {"0.2"}});
    INFO(describe(r) << " spawn_time " << r.spawn_time.count() << "ns run_time "
                     << r.run_time.count() << "ns wait_time " << r.wait_time.count() << "ns");
    CHECK(r.succeeded());
    CHECK(r.pid > 0);
    CHECK(r.pid != ::getpid());
    CHECK(r.spawn_time > 0ns);
    CHECK(r.spawn_time < 5s);
    CHECK(r.run_time >= 200ms);
    CHECK(r.run_time < 10s);
    CHECK(r.wait_time == 0ns); // no queue: nothing was waited for
}

TEST_CASE("a task that waited for a free slot reports its wait_time", "[subprocess]") {
    process_queue queue({.max_concurrency = 1, .capacity = 10});
    auto first = queue.submit(btq::command{.program = "/bin/sleep", .arguments = {"0.2"}});
    auto second = queue.submit(btq::command{.program = "/bin/sleep", .arguments = {"0.2"}});
    const btq::process_result a = answer(first);
    const btq::process_result b = answer(second);
    INFO("first wait " << a.wait_time.count() << "ns run " << a.run_time.count()
                       << "ns, second wait " << b.wait_time.count() << "ns run "
                       << b.run_time.count() << "ns");
    CHECK(a.succeeded());
    CHECK(b.succeeded());
    CHECK(b.wait_time > 0ns);
    CHECK(b.wait_time >= 150ms); // it waited for the first sleep to end
    CHECK(a.wait_time < b.wait_time);
    CHECK(a.run_time >= 200ms);
    CHECK(b.run_time >= 200ms);
}

TEST_CASE("running() counts the children started and not yet reaped", "[subprocess]") {
    btq::subprocess_executor executor;
    CHECK(executor.running() == 0);
    std::array<std::promise<btq::process_result>, 2> outcomes;
    for (auto& outcome : outcomes) {
        executor.execute(btq::command{.program = "/bin/sleep", .arguments = {"0.3"}},
                         btq::completion<btq::process_result>::from(
                             [&outcome](btq::task_result<btq::process_result> r) {
                                 if (r) {
                                     outcome.set_value(std::move(*r));
                                 } else {
                                     outcome.set_exception(r.error());
                                 }
                             }));
    }
    CHECK(eventually([&] { return executor.running() == 2; }, 1s));
    for (auto& outcome : outcomes) {
        auto future = outcome.get_future();
        CHECK(answer(future).succeeded());
    }
    CHECK(eventually([&] { return executor.running() == 0; }, 5s));
}

TEST_CASE("each child leads its own process group and is a direct child of this process",
          "[subprocess]") {
    process_queue queue({.max_concurrency = 4, .capacity = 10});
    std::vector<std::future<btq::process_result>> futures;
    for (int i = 0; i < 4; ++i) {
        futures.push_back(
            queue.submit(btq::command{.program = "/bin/cat", .arguments = {"/proc/self/stat"}}));
    }
    std::set<pid_t> groups;
    for (auto& future : futures) {
        const btq::process_result r = answer(future);
        INFO(describe(r));
        REQUIRE(r.succeeded());
        const auto info = parse_stat(r.standard_output);
        REQUIRE(info.has_value());
        CHECK(info->pid == r.pid);
        CHECK(info->group == r.pid);
        CHECK(info->group != ::getpgrp());
        CHECK(info->parent == ::getpid());
        groups.insert(info->group);
    }
    CHECK(groups.size() == futures.size());
}

TEST_CASE("destroying a queue cancels its running children instead of waiting for them",
          "[subprocess]") {
    std::future<btq::process_result> running;
    const auto before = steady::now();
    {
        process_queue queue({.max_concurrency = 1, .capacity = 4});
        running = queue.submit(btq::command{.program = "/bin/sleep", .arguments = {"30"}});
        REQUIRE(eventually([&] { return queue.executor().running() == 1; }));
    }
    CHECK(steady::now() - before < 10s);
    const btq::process_result r = answer(running);
    CHECK(r.ending == btq::process_ending::signaled);
    CHECK(r.signal == SIGKILL);
}

TEST_CASE("a command that cannot start is caught as task_not_run with reason not_started",
          "[subprocess]") {
    process_queue queue({.max_concurrency = 1, .capacity = 4});
    auto missing = queue.submit(btq::command{.program = "/nonexistent/program"});
    REQUIRE(missing.wait_for(answer_limit) == std::future_status::ready);
    try {
        static_cast<void>(missing.get());
        FAIL("a program that does not exist cannot have run");
    } catch (const btq::task_not_run& e) {
        CHECK(e.reason() == btq::not_run_reason::not_started);
        CHECK(std::string(e.what()).find("/nonexistent/program") != std::string::npos);
    }
}

TEST_CASE("drain from a completion callback on the subprocess executor's event thread throws "
          "wait_deadlock",
          "[subprocess][lifecycle]") {
    btq::bounded_task_queue<btq::command, btq::subprocess_executor> queue({.max_concurrency = 1});
    std::promise<bool> threw;
    queue.submit(btq::command{.program = "/bin/true"},
                 [&](btq::task_result<btq::process_result> /*result*/) noexcept {
                     try {
                         queue.drain();
                         threw.set_value(false);
                     } catch (const btq::wait_deadlock&) {
                         threw.set_value(true);
                     }
                 });
    CHECK(threw.get_future().get());
    queue.drain();
}
