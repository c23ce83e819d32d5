// Memory limits and oom_score_adj of btq::subprocess_executor's children: a child that grows in
// steps, one that allocates as fast as it can, one whose memory the kernel limit does not count
// (shared mappings: only the watchdog stops it), a child well under its limit, the accuracy of
// peak_resident_bytes, and the oom_score_adj a real child runs with.
//
// The children are Python programs (not sanitized, whatever this build is). None can take the
// machine with it if a limit failed: each allocates at most 1 GiB in all, and sets itself a hard
// RLIMIT_AS of 1.5 GiB before it starts.
#include <btq/executors/subprocess_executor.hpp>

#include <btq/btq.hpp>

#include <catch2/catch.hpp>

#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdlib>
#include <fstream>
#include <future>
#include <optional>
#include <sstream>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include "memory_mechanisms.hpp"
#include "proc_support.hpp"
#include "test_support.hpp"

using namespace std::chrono_literals;

namespace {

using process_queue = btq::bounded_task_queue<btq::command, btq::subprocess_executor>;

constexpr std::size_t mebibyte = std::size_t{1} << 20;
constexpr auto answer_limit = 60s;

/// A child that takes memory: argv[1] the way (steps: private memory, 16 MiB at a time with a
/// pause; fast: the same without a pause; shared: shared anonymous mappings, which RLIMIT_DATA
/// does not count; touch: argv[2] MiB at once, then holds it 300 ms), argv[2] MiB in all (at
/// most 1024). Each piece is written to, so it is resident. It prints its resident size before
/// it starts taking memory ("start <bytes>"), then "done" if it got everything.
constexpr const char* memory_child_script = R"(
import mmap, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29))
way, total = sys.argv[1], min(int(sys.argv[2]), 1024) << 20
step = 16 << 20
with open("/proc/self/status") as status:
    rss = [line for line in status if line.startswith("VmRSS:")][0].split()[1]
print("start", int(rss) * 1024, flush=True)
kept = []
if way == "touch":
    kept.append(b"\x01" * total)
    time.sleep(0.3)
elif way == "shared":
    chunk = b"\x01" * step
    while len(kept) * step < total:
        piece = mmap.mmap(-1, step)
        piece.write(chunk)
        kept.append(piece)
        time.sleep(0.02)
else:
    while len(kept) * step < total:
        kept.append(b"\x01" * step)
        if way == "steps":
            time.sleep(0.01)
print("done", flush=True)
)";

btq::command memory_child(const std::string& way, std::size_t mebibytes,
                          std::optional<std::size_t> limit) {
    btq::command cmd{.program = "python3",
                     .arguments = {"-c", memory_child_script, way, std::to_string(mebibytes)}};
    cmd.memory_limit = limit;
    cmd.timeout = 30s; // a safety net: every test here ends long before
    return cmd;
}

btq::process_result answer(std::future<btq::process_result>&& future) {
    REQUIRE(future.wait_for(answer_limit) == std::future_status::ready);
    return future.get();
}

std::string describe(const btq::process_result& r) {
    std::ostringstream out;
    out << "ending " << btq::to_string(r.ending) << ", exit_code " << r.exit_code << ", signal "
        << r.signal << ", peak " << r.peak_resident_bytes / mebibyte << " MiB ("
        << r.peak_resident_bytes << "), run_time "
        << std::chrono::duration_cast<std::chrono::milliseconds>(r.run_time).count()
        << " ms, stdout '" << r.standard_output << "', stderr '" << r.standard_error.substr(0, 300)
        << "'";
    return out.str();
}

/// The resident size the child printed before it took memory.
std::size_t start_resident(const btq::process_result& r) {
    std::istringstream in(r.standard_output);
    std::string word;
    std::size_t bytes = 0;
    in >> word >> bytes;
    return word == "start" ? bytes : 0;
}

std::string read_text(const std::string& path) {
    std::ifstream in(path);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

int read_oom_score_adj(pid_t pid) {
    return std::stoi(read_text("/proc/" + std::to_string(pid) + "/oom_score_adj"));
}

/// Whether this process may lower an oom_score_adj (CAP_SYS_RESOURCE, bit 24 of CapEff).
bool may_lower_oom_score_adj() {
    std::istringstream status(read_text("/proc/self/status"));
    std::string line;
    while (std::getline(status, line)) {
        if (line.rfind("CapEff:", 0) == 0) {
            return ((std::stoull(line.substr(7), nullptr, 16) >> 24U) & 1U) != 0;
        }
    }
    return false;
}

} // namespace

// What the kernel limit counts (private writable memory) stops such a child before its resident
// size passes the limit: what it may have beyond is its program's own file-backed pages and stack
// (README, "Memory limit": a few MiB for an interpreter; 16 MiB allowed here).
constexpr std::size_t private_overshoot = 16 * mebibyte;

TEST_CASE("a child touching 1 GiB in 16 MiB steps under a 128 MiB limit ends memory_limit within "
          "2 s and its peak stays within the documented overshoot",
          "[subprocess][memory]") {
    BTQ_EACH_MEMORY_MECHANISM();
    process_queue queue({.max_concurrency = 1, .capacity = 4});
    const std::size_t limit = 128 * mebibyte;
    const btq::process_result r = answer(queue.submit(memory_child("steps", 1024, limit)));
    INFO(describe(r));
    CHECK(r.ending == btq::process_ending::memory_limit);
    CHECK(r.standard_output.find("done") == std::string::npos);
    CHECK(r.run_time < 2s);
    CHECK(r.peak_resident_bytes > limit / 2);
    CHECK(r.peak_resident_bytes <= limit + private_overshoot);
}

TEST_CASE("a child allocating as fast as it can under a 128 MiB limit is stopped the same way",
          "[subprocess][memory]") {
    BTQ_EACH_MEMORY_MECHANISM();
    process_queue queue({.max_concurrency = 1, .capacity = 4});
    const std::size_t limit = 128 * mebibyte;
    const btq::process_result r = answer(queue.submit(memory_child("fast", 1024, limit)));
    INFO(describe(r));
    CHECK(r.ending == btq::process_ending::memory_limit);
    CHECK(r.standard_output.find("done") == std::string::npos);
    CHECK(r.run_time < 2s);
    CHECK(r.peak_resident_bytes <= limit + private_overshoot);
}

TEST_CASE("a child whose memory RLIMIT_DATA does not count (shared mappings) is stopped, by its "
          "cgroup at the limit, or by the watchdog soon after it passes it",
          "[subprocess][memory]") {
    BTQ_EACH_MEMORY_MECHANISM();
    process_queue queue({.max_concurrency = 1, .capacity = 4});
    const std::size_t limit = 128 * mebibyte;
    const btq::process_result r = answer(queue.submit(memory_child("shared", 1024, limit)));
    INFO(describe(r));
    CHECK(r.ending == btq::process_ending::memory_limit);
    CHECK(r.signal == SIGKILL);
    CHECK(r.standard_output.find("done") == std::string::npos);
    if (mechanism == btq::memory_limit_mechanism::rlimit_and_watchdog) {
        CHECK(r.peak_resident_bytes > limit);
        // 16 MiB every 20 ms, looked at every 20 ms: a few steps past the limit at most, even
        // with the looks late on a loaded machine (1 GiB would mean the watchdog never acted).
        CHECK(r.peak_resident_bytes <= limit + 160 * mebibyte);
    } else {
        // A cgroup counts shared memory as it is touched: the kernel stops it at the limit.
        CHECK(r.peak_resident_bytes <= limit + private_overshoot);
    }
}

TEST_CASE("a child well under its memory limit runs to the end unaffected",
          "[subprocess][memory]") {
    BTQ_EACH_MEMORY_MECHANISM();
    process_queue queue({.max_concurrency = 1, .capacity = 4});
    const btq::process_result r = answer(queue.submit(memory_child("steps", 64, 256 * mebibyte)));
    INFO(describe(r));
    CHECK(r.succeeded());
    CHECK(r.ending == btq::process_ending::exited);
    CHECK(r.standard_output.find("done") != std::string::npos);
}

TEST_CASE("peak_resident_bytes is within 10% of what a child touched, with and without a limit",
          "[subprocess][memory]") {
    BTQ_EACH_MEMORY_MECHANISM();
    process_queue queue({.max_concurrency = 1, .capacity = 4});
    for (const std::optional<std::size_t> limit :
         {std::optional<std::size_t>{}, std::optional<std::size_t>{512 * mebibyte}}) {
        const btq::process_result r = answer(queue.submit(memory_child("touch", 64, limit)));
        INFO(describe(r) << (limit ? " (with a limit)" : " (no limit)"));
        REQUIRE(r.succeeded());
        const std::size_t before = start_resident(r);
        REQUIRE(before > 0);
        const std::size_t touched = 64 * mebibyte;
        INFO("resident before touching " << before);
        CHECK(r.peak_resident_bytes >= before + touched - touched / 10);
        CHECK(r.peak_resident_bytes <= before + touched + touched / 10);
    }
}

TEST_CASE("peak_resident_bytes is reported for a child without a memory limit",
          "[subprocess][memory]") {
    process_queue queue({.max_concurrency = 1, .capacity = 4});
    const btq::process_result r = answer(queue.submit(btq::command{.program = "/bin/true"}));
    INFO(describe(r));
    CHECK(r.succeeded());
    CHECK(r.peak_resident_bytes > 0);
}

TEST_CASE("a running child has oom_score_adj 1000 by default, the value its command sets, or the "
          "parent's when the command leaves it empty",
          "[subprocess][oom]") {
    process_queue queue({.max_concurrency = 1, .capacity = 4});
    const int parent = read_oom_score_adj(::getpid());
    const auto seen_by_parent = [&queue](btq::command cmd) {
        std::stop_source stop;
        auto future = queue.submit(std::move(cmd), btq::submit_options{.stop = stop.get_token()});
        std::optional<int> seen;
        REQUIRE(btq_test::eventually([&seen] {
            for (const auto& child : btq_test::children_of(::getpid())) {
                if (child.name == "sleep") {
                    seen = read_oom_score_adj(child.pid);
                    return true;
                }
            }
            return false;
        }));
        stop.request_stop();
        const btq::process_result r = answer(std::move(future));
        CHECK(r.ending == btq::process_ending::cancelled);
        return *seen;
    };
    btq::command sleeper{.program = "sleep", .arguments = {"30"}};
    CHECK(btq::command::default_oom_score_adj == 1000);
    CHECK(seen_by_parent(sleeper) == 1000);
    sleeper.oom_score_adj = 700;
    CHECK(seen_by_parent(sleeper) == 700);
    sleeper.oom_score_adj.reset();
    CHECK(seen_by_parent(sleeper) == parent);
}

TEST_CASE("an oom_score_adj below the parent's fails the command with spawn_error EACCES unless "
          "this process may lower it",
          "[subprocess][oom]") {
    const int parent = read_oom_score_adj(::getpid());
    if (parent == -1000) {
        SUCCEED("the parent's oom_score_adj is already the lowest");
        return;
    }
    process_queue queue({.max_concurrency = 1, .capacity = 4});
    btq::command lower{.program = "/bin/cat", .arguments = {"/proc/self/oom_score_adj"}};
    lower.oom_score_adj = parent - 1;
    auto future = queue.submit(lower);
    REQUIRE(future.wait_for(answer_limit) == std::future_status::ready);
    if (may_lower_oom_score_adj()) {
        const btq::process_result r = future.get();
        CHECK(r.standard_output == std::to_string(parent - 1) + "\n");
        return;
    }
    try {
        (void)future.get();
        FAIL("the command started");
    } catch (const btq::spawn_error& error) {
        CHECK(error.code().value() == EACCES);
        CHECK(std::string(error.what()).find("oom_score_adj") != std::string::npos);
    }
}

TEST_CASE("to_string names the memory_limit ending and the memory limit mechanisms",
          "[subprocess][memory]") {
    CHECK(btq::to_string(btq::process_ending::memory_limit) == "memory_limit");
    CHECK(btq::to_string(btq::memory_limit_mechanism::rlimit_and_watchdog) ==
          "rlimit_and_watchdog");
    CHECK(btq::to_string(btq::memory_limit_mechanism::cgroup_v1_and_watchdog) ==
          "cgroup_v1_and_watchdog");
    CHECK(btq::to_string(btq::memory_limit_mechanism::cgroup_v2_and_watchdog) ==
          "cgroup_v2_and_watchdog");
}

// ---- memory cgroups -----------------------------------------------------------------------------

namespace {

/// The memory cgroup line of /proc/PID/cgroup (v1 "N:memory:/path", v2 "0::/path").
std::string memory_cgroup_of(pid_t pid, btq::memory_limit_mechanism mechanism) {
    std::istringstream lines(read_text("/proc/" + std::to_string(pid) + "/cgroup"));
    std::string line;
    const bool v2 = mechanism == btq::memory_limit_mechanism::cgroup_v2_and_watchdog;
    while (std::getline(lines, line)) {
        if (v2 ? line.rfind("0::", 0) == 0 : line.find(":memory:") != std::string::npos) {
            return line;
        }
    }
    return {};
}

/// A folder for a made-up cgroup tree, removed afterwards.
struct scratch_folder {
    std::string path;
    scratch_folder() {
        std::string pattern = "/tmp/btq-cgroup-test-XXXXXX";
        REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        path = pattern;
    }
    scratch_folder(const scratch_folder&) = delete;
    scratch_folder& operator=(const scratch_folder&) = delete;
    ~scratch_folder() {
        [[maybe_unused]] const int removed = std::system(("rm -rf '" + path + "'").c_str());
    }
    void make(const std::string& relative) const {
        REQUIRE(std::system(("mkdir -p '" + path + "/" + relative + "'").c_str()) == 0);
    }
    void write(const std::string& relative, const std::string& text) const {
        std::ofstream(path + "/" + relative) << text;
    }
};

} // namespace

TEST_CASE("memory cgroups are found in the process's own cgroup: v2 where memory is in its "
          "subtree_control, v1 under a namespaced mount, nothing where neither can be made",
          "[memory][cgroup]") {
    namespace detail = btq::process::detail;
    const scratch_folder tree;
    tree.make("unified/service/leaf");
    tree.make("memory/this");
    tree.write("memory/this/memory.limit_in_bytes", "9223372036854771712\n");
    const std::string mountinfo =
        "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
        "35 31 0:32 /container " +
        tree.path +
        "/memory rw,relatime - cgroup cgroup rw,memory\n"
        "36 31 0:33 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
        "41 31 0:38 / " +
        tree.path + "/unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n";
    const std::string self = "4:memory:/container/this\n1:cpu:/\n0::/service/leaf\n";

    SECTION("v2 first, where memory is delegated to the process's cgroup") {
        tree.write("unified/service/leaf/cgroup.subtree_control", "cpu memory\n");
        const auto parent = detail::discover_parent(mountinfo, self);
        REQUIRE(parent.has_value());
        CHECK(parent->version == 2);
        CHECK(parent->path == tree.path + "/unified/service/leaf");
    }
    SECTION("v1 when v2 has no memory there (the mount's root taken off the own path)") {
        tree.write("unified/service/leaf/cgroup.subtree_control", "cpu\n");
        const auto parent = detail::discover_parent(mountinfo, self);
        REQUIRE(parent.has_value());
        CHECK(parent->version == 1);
        CHECK(parent->path == tree.path + "/memory/this");
    }
    SECTION("nothing when the own cgroup is not under the mount, or has no memory controller") {
        tree.write("unified/service/leaf/cgroup.subtree_control", "cpu\n");
        CHECK_FALSE(detail::discover_parent(mountinfo, "4:memory:/elsewhere\n0::/gone\n"));
        CHECK_FALSE(detail::discover_parent("", self));
    }
}

TEST_CASE("set_memory_cgroup_parent chooses RLIMIT_DATA, a folder, or automatic, and refuses a "
          "folder where no memory cgroup can be made",
          "[memory][cgroup]") {
    CHECK(btq::set_memory_cgroup_parent(std::string()) ==
          btq::memory_limit_mechanism::rlimit_and_watchdog);
    CHECK(btq::active_memory_limit_mechanism() == btq::memory_limit_mechanism::rlimit_and_watchdog);
    CHECK_THROWS_AS(btq::set_memory_cgroup_parent(std::string("/nonexistent/btq")),
                    std::invalid_argument);
    const scratch_folder plain;
    CHECK_THROWS_AS(btq::set_memory_cgroup_parent(plain.path), std::invalid_argument);
    (void)btq::set_memory_cgroup_parent(std::nullopt);
}

TEST_CASE("a limited child runs in a memory cgroup of its own, which is gone once it is done",
          "[subprocess][memory][cgroup]") {
    const btq::memory_limit_mechanism mechanism = btq::set_memory_cgroup_parent(std::nullopt);
    if (mechanism == btq::memory_limit_mechanism::rlimit_and_watchdog) {
        WARN("no memory cgroup can be made here");
        return;
    }
    process_queue queue({.max_concurrency = 1, .capacity = 4});
    btq::command sleeper{.program = "sleep", .arguments = {"30"}};
    sleeper.memory_limit = 64 * mebibyte;
    std::stop_source stop;
    auto future = queue.submit(sleeper, btq::submit_options{.stop = stop.get_token()});
    std::string seen;
    REQUIRE(btq_test::eventually([&] {
        for (const auto& child : btq_test::children_of(::getpid())) {
            if (child.name == "sleep") {
                seen = memory_cgroup_of(child.pid, mechanism);
                return true;
            }
        }
        return false;
    }));
    const std::string own = "/btq-" + std::to_string(::getpid()) + "-";
    INFO("the child's cgroup: " << seen
                                << "; this process's: " << memory_cgroup_of(::getpid(), mechanism));
    CHECK(seen.find(own) != std::string::npos);
    CHECK(memory_cgroup_of(::getpid(), mechanism).find(own) == std::string::npos);
    stop.request_stop();
    const btq::process_result r = answer(std::move(future));
    CHECK(r.ending == btq::process_ending::cancelled);

    const std::optional<btq::process::cgroup_parent> parent =
        btq::process::detail::current_parent();
    REQUIRE(parent.has_value());
    const std::string folder = parent->path + seen.substr(seen.rfind('/'));
    INFO("its folder " << folder);
    CHECK(::access(folder.c_str(), F_OK) != 0);
}
