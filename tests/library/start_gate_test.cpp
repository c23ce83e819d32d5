// Start gates (btq::start_gate): the memory gate driven by injected readings, the parsers of the
// kernel's memory files, and a counting-semaphore gate that grants from its own thread, as an
// asynchronous cluster-wide permit pool would.
#include <btq/bounded_task_queue.hpp>
#include <btq/gates/memory_gate.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

using namespace std::chrono_literals;
using btq_test::eventually;
using btq_test::gate;

namespace {

constexpr std::uint64_t mebibyte = std::uint64_t{1} << 20;

/// Readings the test sets; the memory gate's source reads them.
struct fake_memory {
    std::atomic<std::uint64_t> available{1024 * mebibyte};
    std::atomic<int> pressure_percent{0};

    std::function<btq::memory_reading()> source() {
        return [this] {
            btq::memory_reading reading;
            reading.mem_available = available.load();
            reading.pressure_some_avg10 = static_cast<double>(pressure_percent.load());
            return reading;
        };
    }
};

/// A memory gate on `memory` whose own thread never reads during a test (the test calls
/// refresh()), with a floor of 256 MiB.
btq::memory_gate_options driven_by(fake_memory& memory, bool progress_guarantee) {
    return btq::memory_gate_options{.min_available_bytes = 256 * mebibyte,
                                    .max_pressure = 20.0,
                                    .interval = std::chrono::hours(1),
                                    .progress_guarantee = progress_guarantee,
                                    .source = memory.source()};
}

using memory_queue =
    btq::bounded_task_queue<std::function<void()>, btq::thread_executor, btq::memory_gate>;
using stoppable_memory_queue = btq::bounded_task_queue<std::function<void(std::stop_token)>,
                                                       btq::thread_executor, btq::memory_gate>;

template <class Future>
bool ready_now(Future& future) {
    return future.wait_for(0s) == std::future_status::ready;
}

/// Records the order in which tasks start.
struct start_order {
    std::mutex mutex;
    std::vector<int> seen;
    std::function<void()> task(int id) {
        return [this, id] {
            std::lock_guard lock(mutex);
            seen.push_back(id);
        };
    }
};

/// A counting semaphore of `permits` that grants asynchronously: try_acquire() only hands out
/// permits its granter thread has fetched ahead (as a network client would), and refuses
/// otherwise; the granter fetches when a queue asks or says it has demand, and wakes the queues
/// from its own thread. It can also be told to refuse everything for a while.
class semaphore_gate {
  public:
    class permit_type {
      public:
        permit_type(permit_type&& other) noexcept
            : gate_(std::exchange(other.gate_, nullptr)), serial_(other.serial_) {}
        permit_type& operator=(permit_type&&) = delete;
        permit_type(const permit_type&) = delete;
        permit_type& operator=(const permit_type&) = delete;
        ~permit_type() {
            if (gate_ != nullptr) {
                gate_->release(serial_);
            }
        }
        [[nodiscard]] std::uint64_t serial() const noexcept { return serial_; }
        /// btq::revocable_permit: the running task's own stop source, kept by the gate so
        /// lose_all() can request it as a pool's renewal thread would on a lost lease.
        void bind_stop(std::stop_source source) { gate_->bound(serial_, std::move(source)); }

      private:
        friend class semaphore_gate;
        permit_type(semaphore_gate* gate, std::uint64_t serial) : gate_(gate), serial_(serial) {}
        semaphore_gate* gate_;
        std::uint64_t serial_;
    };

    explicit semaphore_gate(std::size_t permits) : permits_(permits), free_(permits) {
        granter_ = std::thread([this] { grant_loop(); });
    }
    semaphore_gate(const semaphore_gate&) = delete;
    semaphore_gate& operator=(const semaphore_gate&) = delete;
    semaphore_gate(semaphore_gate&&) = delete;
    semaphore_gate& operator=(semaphore_gate&&) = delete;
    ~semaphore_gate() {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        changed_.notify_all();
        granter_.join();
    }

    std::optional<permit_type> try_acquire(const btq::start_request& /*request*/) noexcept {
        std::lock_guard lock(mutex_);
        if (refusing_ || fetched_ == 0) {
            ++refusals_;
            asked_ = true;
            changed_.notify_all();
            return std::nullopt;
        }
        --fetched_;
        ++granted_;
        const std::uint64_t serial = ++serials_;
        out_.insert(serial);
        peak_out_ = std::max(peak_out_, out_.size());
        return permit_type(this, serial);
    }

    void demand(const btq::start_gate_waker& /*queue*/, std::size_t held) noexcept {
        std::lock_guard lock(mutex_);
        demand_ = held;
        if (held > 0) {
            changed_.notify_all();
        }
    }

    void attach(btq::start_gate_waker waker) {
        std::lock_guard lock(mutex_);
        wakers_.push_back(waker);
    }
    void detach(btq::start_gate_waker waker) {
        std::unique_lock lock(mutex_);
        std::erase(wakers_, waker);
        idle_.wait(lock, [this] { return !waking_; });
    }

    /// btq::start_gate's optional hook: a task with a `fencing_token` gets its permit's serial.
    template <class Task>
    void prepare(Task& task, const permit_type& permit)
        requires requires { task.fencing_token; }
    {
        task.fencing_token = permit.serial();
    }

    /// Every lease out is lost: their tasks' stop tokens are requested.
    void lose_all() {
        std::vector<std::stop_source> losing;
        {
            std::lock_guard lock(mutex_);
            for (const auto& [serial, source] : stops_) {
                losing.push_back(source);
            }
        }
        for (std::stop_source& source : losing) {
            source.request_stop();
        }
    }

    /// Refuse everything (true) or grant again (false, which wakes the queues).
    void set_refusing(bool refusing) {
        {
            std::lock_guard lock(mutex_);
            refusing_ = refusing;
            asked_ = asked_ || !refusing;
        }
        changed_.notify_all();
    }

    /// Free permits: in the pool, plus fetched and not handed out.
    [[nodiscard]] std::size_t free_count() {
        std::lock_guard lock(mutex_);
        return free_ + fetched_;
    }
    [[nodiscard]] std::size_t permits() const noexcept { return permits_; }
    [[nodiscard]] std::uint64_t granted() {
        std::lock_guard lock(mutex_);
        return granted_;
    }
    [[nodiscard]] std::uint64_t released() {
        std::lock_guard lock(mutex_);
        return released_;
    }
    [[nodiscard]] std::uint64_t double_releases() {
        std::lock_guard lock(mutex_);
        return double_releases_;
    }
    [[nodiscard]] std::size_t peak_out() {
        std::lock_guard lock(mutex_);
        return peak_out_;
    }
    [[nodiscard]] std::uint64_t refusals() {
        std::lock_guard lock(mutex_);
        return refusals_;
    }

  private:
    void release(std::uint64_t serial) noexcept {
        {
            std::lock_guard lock(mutex_);
            stops_.erase(serial);
            if (out_.erase(serial) == 0) {
                ++double_releases_;
                return;
            }
            ++released_;
            ++free_;
            asked_ = true; // fetch it again for whoever waits
        }
        changed_.notify_all();
    }

    void bound(std::uint64_t serial, std::stop_source source) {
        std::lock_guard lock(mutex_);
        stops_.insert_or_assign(serial, std::move(source));
    }

    void grant_loop() {
        std::unique_lock lock(mutex_);
        for (;;) {
            changed_.wait(
                lock, [this] { return stopping_ || asked_ || (demand_ > fetched_ && free_ > 0); });
            if (stopping_) {
                return;
            }
            asked_ = false;
            // "Network round trip": fetch as many as the queues say they wait for (at least
            // one), then wake them.
            const std::size_t want = std::max<std::size_t>(demand_, 1);
            while (free_ > 0 && fetched_ < want) {
                --free_;
                ++fetched_;
            }
            if (refusing_ || fetched_ == 0) {
                continue;
            }
            std::vector<btq::start_gate_waker> calling = wakers_;
            waking_ = true;
            lock.unlock();
            for (const btq::start_gate_waker& waker : calling) {
                waker();
            }
            lock.lock();
            waking_ = false;
            idle_.notify_all();
        }
    }

    const std::size_t permits_;
    std::mutex mutex_;
    std::condition_variable changed_;
    std::condition_variable idle_;
    std::size_t free_;
    std::size_t fetched_ = 0;
    std::size_t demand_ = 0;
    bool asked_ = false;
    bool refusing_ = false;
    bool stopping_ = false;
    bool waking_ = false;
    std::uint64_t serials_ = 0;
    std::uint64_t granted_ = 0;
    std::uint64_t released_ = 0;
    std::uint64_t double_releases_ = 0;
    std::uint64_t refusals_ = 0;
    std::set<std::uint64_t> out_;
    std::map<std::uint64_t, std::stop_source> stops_;
    std::size_t peak_out_ = 0;
    std::vector<btq::start_gate_waker> wakers_;
    std::thread granter_;
};

static_assert(btq::start_gate<semaphore_gate>);
static_assert(btq::revocable_permit<semaphore_gate::permit_type>);
static_assert(!btq::revocable_permit<btq::memory_gate::permit_type>);

using semaphore_queue = btq::bounded_task_queue<std::function<void(std::stop_token)>,
                                                btq::thread_executor, semaphore_gate>;

} // namespace

// ---- the parsers --------------------------------------------------------------------------

TEST_CASE("the meminfo parser reads MemAvailable in bytes", "[gate][memory]") {
    const std::string text = "MemTotal:       16314336 kB\n"
                             "MemFree:         1261760 kB\n"
                             "MemAvailable:    9876543 kB\n"
                             "Buffers:          302840 kB\n";
    REQUIRE(btq::memory_readings::parse_meminfo_available(text) == std::uint64_t{9876543} * 1024);
    CHECK_FALSE(btq::memory_readings::parse_meminfo_available("MemTotal: 1 kB\n"));
    CHECK_FALSE(btq::memory_readings::parse_meminfo_available("MemAvailable: lots\n"));
    CHECK_FALSE(btq::memory_readings::parse_meminfo_available(""));
}

TEST_CASE("the pressure parser reads some avg10 and ignores the full line", "[gate][memory]") {
    const std::string text = "some avg10=12.34 avg60=5.00 avg300=1.00 total=123456\n"
                             "full avg10=99.00 avg60=0.00 avg300=0.00 total=0\n";
    REQUIRE(btq::memory_readings::parse_pressure_some_avg10(text) == Approx(12.34));
    CHECK(btq::memory_readings::parse_pressure_some_avg10(
              "full avg10=1.00 avg60=0.00 avg300=0.00 total=0\n"
              "some avg10=0.00 avg60=0.00 avg300=0.00 total=0") == Approx(0.0));
    CHECK_FALSE(btq::memory_readings::parse_pressure_some_avg10("full avg10=1.00\n"));
    CHECK_FALSE(btq::memory_readings::parse_pressure_some_avg10("some avg10=x avg60=0.00\n"));
}

TEST_CASE("the cgroup byte parser takes numbers and reads max and v1's no-limit as none",
          "[gate][memory]") {
    using btq::memory_readings::parse_cgroup_bytes;
    CHECK(parse_cgroup_bytes("536870912\n") == std::uint64_t{536870912});
    CHECK(parse_cgroup_bytes("0") == std::uint64_t{0});
    CHECK_FALSE(parse_cgroup_bytes("max\n"));
    CHECK_FALSE(parse_cgroup_bytes("9223372036854771712\n")); // v1 "unlimited"
    CHECK_FALSE(parse_cgroup_bytes(""));
    CHECK_FALSE(parse_cgroup_bytes("12ab"));
}

TEST_CASE("the /proc/self/cgroup parser finds the v2 path and the v1 memory path",
          "[gate][memory]") {
    using btq::memory_readings::parse_proc_self_cgroup;
    const auto v2 = parse_proc_self_cgroup("0::/user.slice/user-1000.slice/session-2.scope\n");
    CHECK(v2.v2 == std::string("/user.slice/user-1000.slice/session-2.scope"));
    CHECK_FALSE(v2.v1_memory);

    const auto v1 = parse_proc_self_cgroup("12:cpuset:/\n"
                                           "11:memory:/docker/abc\n"
                                           "10:cpu,cpuacct:/docker/abc\n"
                                           "1:name=systemd:/docker/abc\n");
    CHECK(v1.v1_memory == std::string("/docker/abc"));
    CHECK_FALSE(v1.v2);

    const auto hybrid = parse_proc_self_cgroup("5:blkio,memory:/a\n0::/b\n");
    CHECK(hybrid.v1_memory == std::string("/a"));
    CHECK(hybrid.v2 == std::string("/b"));
}

TEST_CASE("a reading's available memory is the lower of the host's and the cgroup's",
          "[gate][memory]") {
    btq::memory_reading reading;
    CHECK_FALSE(reading.available_bytes());
    reading.mem_available = 900;
    CHECK(reading.available_bytes() == std::uint64_t{900});
    reading.cgroup_available = 300;
    CHECK(reading.available_bytes() == std::uint64_t{300});
    reading.mem_available = 100;
    CHECK(reading.available_bytes() == std::uint64_t{100});
}

TEST_CASE("the memory gate's rule: a floor of available memory and a pressure ceiling; "
          "missing readings hold nothing",
          "[gate][memory]") {
    const btq::memory_gate_options options{.min_available_bytes = 100, .max_pressure = 10.0};
    btq::memory_reading reading;
    CHECK(btq::memory_gate::admits(options, reading));
    reading.mem_available = 99;
    CHECK_FALSE(btq::memory_gate::admits(options, reading));
    reading.mem_available = 100;
    CHECK(btq::memory_gate::admits(options, reading));
    reading.cgroup_available = 50;
    CHECK_FALSE(btq::memory_gate::admits(options, reading));
    reading.cgroup_available.reset();
    reading.pressure_some_avg10 = 10.5;
    CHECK_FALSE(btq::memory_gate::admits(options, reading));
    reading.pressure_some_avg10 = 10.0;
    CHECK(btq::memory_gate::admits(options, reading));
}

TEST_CASE("the default reading of this host parses", "[gate][memory]") {
    const btq::memory_reading reading = btq::memory_readings::read_system();
    // Every Linux since 3.14 has MemAvailable; PSI and a cgroup limit may be absent.
    REQUIRE(reading.mem_available);
    CHECK(*reading.mem_available > 0);
    if (reading.pressure_some_avg10) {
        CHECK(*reading.pressure_some_avg10 >= 0.0);
        CHECK(*reading.pressure_some_avg10 <= 100.0);
    }
}

// ---- the memory gate in a queue -----------------------------------------------------------

TEST_CASE("the memory gate holds every task while available memory is below its floor",
          "[gate][memory]") {
    fake_memory memory;
    memory.available = 100 * mebibyte;
    btq::memory_gate memory_gate(driven_by(memory, false));
    REQUIRE_FALSE(memory_gate.admitting());
    memory_queue queue(memory_gate, {.max_concurrency = 2, .capacity = 16});
    std::atomic<int> ran{0};
    std::vector<std::future<void>> answers;
    for (int i = 0; i < 5; ++i) {
        answers.push_back(queue.submit([&ran] { ++ran; }));
    }
    // An idle worker of the thread executor may be the one that asks the gate for a plain task:
    // wait until both free slots have been refused.
    REQUIRE(eventually([&] { return queue.stats().held_by_gate == 2; }));
    std::this_thread::sleep_for(10ms); // nothing may start: the gate refuses every time
    CHECK(ran.load() == 0);
    const btq::queue_stats held = queue.stats();
    CHECK(held.active == 0);
    CHECK(held.queued == 5);
    CHECK(held.held_by_gate == 2); // one per free slot
    CHECK(held.gate_holds_total == 2);

    memory.available = 512 * mebibyte;
    memory_gate.refresh();
    for (auto& answer : answers) {
        REQUIRE(answer.wait_for(10s) == std::future_status::ready);
        answer.get();
    }
    REQUIRE(queue.drain(10s));
    const btq::queue_stats after = queue.stats();
    CHECK(ran.load() == 5);
    CHECK(after.held_by_gate == 0);
    CHECK(after.gate_holds_total == 2);
    CHECK(memory_gate.permits_out() == 0);
}

TEST_CASE("memory pressure above the threshold holds tasks too", "[gate][memory]") {
    fake_memory memory;
    memory.pressure_percent = 40;
    btq::memory_gate memory_gate(driven_by(memory, false));
    memory_queue queue(memory_gate, {.max_concurrency = 1});
    std::future<void> answer = queue.submit([] {});
    std::this_thread::sleep_for(10ms);
    CHECK_FALSE(ready_now(answer));
    memory.pressure_percent = 5;
    memory_gate.refresh();
    REQUIRE(answer.wait_for(10s) == std::future_status::ready);
}

TEST_CASE("held tasks start in priority order, FIFO within a priority, when memory recovers",
          "[gate][memory]") {
    fake_memory memory;
    memory.available = 0;
    btq::memory_gate memory_gate(driven_by(memory, false));
    memory_queue queue(memory_gate, {.max_concurrency = 1, .capacity = 64});
    start_order order;
    std::stop_source never; // a stop token sends a priority-0 task down the locked path
    // Plain tasks (the lock-free inbox) and featured ones interleave at priority 0.
    queue.submit(order.task(1), [](btq::task_result<void>) noexcept {});
    queue.submit(order.task(2), [](btq::task_result<void>) noexcept {}, {.priority = 5});
    queue.submit(order.task(3), [](btq::task_result<void>) noexcept {},
                 {.stop = never.get_token()});
    queue.submit(order.task(4), [](btq::task_result<void>) noexcept {});
    queue.submit(order.task(5), [](btq::task_result<void>) noexcept {}, {.priority = 5});
    queue.submit(order.task(6), [](btq::task_result<void>) noexcept {}, {.priority = -1});
    queue.submit(order.task(7), [](btq::task_result<void>) noexcept {});
    queue.submit(order.task(8), [](btq::task_result<void>) noexcept {}, {.priority = 1});
    std::this_thread::sleep_for(10ms);
    CHECK(queue.stats().active == 0);

    memory.available = 1024 * mebibyte;
    memory_gate.refresh();
    REQUIRE(queue.drain(10s));
    std::lock_guard lock(order.mutex);
    CHECK(order.seen == std::vector<int>{2, 5, 8, 1, 3, 4, 7, 6});
}

TEST_CASE("a held task's deadline still expires it", "[gate][memory][deadline]") {
    fake_memory memory;
    memory.available = 0;
    btq::memory_gate memory_gate(driven_by(memory, false));
    memory_queue queue(memory_gate, {.max_concurrency = 2});
    std::atomic<bool> ran{false};
    std::future<void> answer =
        queue.submit([&ran] { ran = true; }, btq::submit_options::within(30ms));
    REQUIRE(answer.wait_for(10s) == std::future_status::ready);
    CHECK_THROWS_AS(answer.get(), btq::task_expired);
    CHECK_FALSE(ran.load());
    const btq::queue_stats stats = queue.stats();
    CHECK(stats.expired == 1);
    CHECK(stats.held_by_gate == 0);
    CHECK(stats.gate_holds_total == 1);
}

TEST_CASE("a held task whose stop is requested is cancelled and never starts",
          "[gate][memory][cancel]") {
    fake_memory memory;
    memory.available = 0;
    btq::memory_gate memory_gate(driven_by(memory, false));
    memory_queue queue(memory_gate, {.max_concurrency = 2});
    std::stop_source cancel;
    std::atomic<bool> ran{false};
    std::future<void> answer = queue.submit([&ran] { ran = true; }, {.stop = cancel.get_token()});
    REQUIRE(eventually([&] { return queue.stats().held_by_gate == 1; }));
    cancel.request_stop();
    REQUIRE(ready_now(answer)); // answered inside request_stop()
    CHECK_THROWS_AS(answer.get(), btq::task_cancelled);
    memory.available = 1024 * mebibyte;
    memory_gate.refresh();
    REQUIRE(queue.drain(10s));
    CHECK_FALSE(ran.load());
    CHECK(queue.stats().cancelled == 1);
    CHECK(queue.stats().held_by_gate == 0);
}

TEST_CASE("clear() answers held tasks with queue_cleared", "[gate][memory][clear]") {
    fake_memory memory;
    memory.available = 0;
    btq::memory_gate memory_gate(driven_by(memory, false));
    memory_queue queue(memory_gate, {.max_concurrency = 2});
    std::vector<std::future<void>> answers;
    for (int i = 0; i < 4; ++i) {
        answers.push_back(queue.submit([] {}, {.priority = i % 2}));
    }
    REQUIRE(eventually([&] { return queue.stats().held_by_gate == 2; }));
    CHECK(queue.clear("no memory") == 4);
    for (auto& answer : answers) {
        REQUIRE(ready_now(answer));
        CHECK_THROWS_AS(answer.get(), btq::queue_cleared);
    }
    const btq::queue_stats stats = queue.stats();
    CHECK(stats.held_by_gate == 0);
    CHECK(stats.queued == 0);
    CHECK(stats.cleared == 4);
    CHECK(memory_gate.permits_out() == 0);
}

TEST_CASE("the progress guarantee starts one task at a time while memory stays low",
          "[gate][memory][progress]") {
    fake_memory memory;
    memory.available = 0;
    btq::memory_gate memory_gate(driven_by(memory, true));
    memory_queue queue(memory_gate, {.max_concurrency = 4, .capacity = 64});
    btq_test::concurrency_probe probe;
    std::vector<std::future<void>> answers;
    for (int i = 0; i < 12; ++i) {
        answers.push_back(queue.submit([&probe] {
            probe.enter();
            std::this_thread::sleep_for(1ms);
            probe.leave();
        }));
    }
    for (auto& answer : answers) {
        REQUIRE(answer.wait_for(30s) == std::future_status::ready);
        answer.get();
    }
    REQUIRE(queue.drain(10s));
    CHECK(probe.peak.load() == 1);
    CHECK(memory_gate.forced_starts() == 12);
    CHECK(memory_gate.permits_out() == 0);
    CHECK(queue.stats().total_processed == 12);
}

TEST_CASE("without the progress guarantee nothing starts while memory stays low",
          "[gate][memory][progress]") {
    fake_memory memory;
    memory.available = 0;
    btq::memory_gate memory_gate(driven_by(memory, false));
    memory_queue queue(memory_gate, {.max_concurrency = 4});
    std::future<void> answer = queue.submit([] {});
    memory_gate.refresh(); // a reading that still refuses wakes nobody and starts nothing
    std::this_thread::sleep_for(20ms);
    CHECK_FALSE(ready_now(answer));
    CHECK(memory_gate.forced_starts() == 0);
    CHECK(queue.clear("test over") == 1);
}

TEST_CASE("the memory gate's own thread re-reads and wakes the queue when memory recovers",
          "[gate][memory]") {
    fake_memory memory;
    memory.available = 0;
    btq::memory_gate_options options = driven_by(memory, false);
    options.interval = 2ms;
    btq::memory_gate memory_gate(std::move(options));
    memory_queue queue(memory_gate, {.max_concurrency = 2});
    std::future<void> answer = queue.submit([] {});
    std::this_thread::sleep_for(10ms);
    CHECK_FALSE(ready_now(answer));
    memory.available = 1024 * mebibyte;
    REQUIRE(answer.wait_for(30s) == std::future_status::ready); // nobody calls refresh()
    CHECK(memory_gate.readings() > 1);
}

TEST_CASE("one memory gate serves two queues, and its progress guarantee counts both",
          "[gate][memory][progress]") {
    fake_memory memory;
    memory.available = 0;
    btq::memory_gate memory_gate(driven_by(memory, true));
    memory_queue first(memory_gate, {.max_concurrency = 2});
    memory_queue second(memory_gate, {.max_concurrency = 2});
    gate release;
    std::future<void> holder = first.submit([&release] { release.wait(); }); // forced start
    REQUIRE(eventually([&] { return first.stats().active == 1; }));
    std::future<void> other = second.submit([] {});
    std::this_thread::sleep_for(10ms);
    CHECK_FALSE(ready_now(other)); // the first queue's task holds the only forced permit
    release.open();
    REQUIRE(other.wait_for(10s) == std::future_status::ready); // woken by that permit's release
    REQUIRE(first.drain(10s));
    REQUIRE(second.drain(10s));
    CHECK(memory_gate.permits_out() == 0);
}

// ---- permits: released exactly once, whatever the ending ------------------------------------

TEST_CASE("a permit is released exactly once on every ending of its task", "[gate][permit]") {
    semaphore_gate permits(2);
    {
        semaphore_queue queue(permits, {.max_concurrency = 2, .capacity = 16});

        SECTION("success and exception") {
            std::future<void> ok = queue.submit([](std::stop_token) {});
            std::future<void> thrown =
                queue.submit([](std::stop_token) { throw std::runtime_error("task failed"); });
            REQUIRE(ok.wait_for(10s) == std::future_status::ready);
            REQUIRE(thrown.wait_for(10s) == std::future_status::ready);
            CHECK_THROWS_AS(thrown.get(), std::runtime_error);
        }
        SECTION("run timeout: released when the task really returns, not at the timeout") {
            gate release;
            std::future<void> late = queue.submit([&release](std::stop_token) { release.wait(); },
                                                  {.run_timeout = 20ms});
            REQUIRE(late.wait_for(10s) == std::future_status::ready);
            CHECK_THROWS_AS(late.get(), btq::task_timeout);
            CHECK(permits.released() == 0); // still running, still holding its permit
            release.open();
            REQUIRE(queue.drain(10s)); // before `release` goes out of scope
        }
        SECTION("cancelled while running") {
            std::stop_source cancel;
            std::atomic<bool> started{false};
            std::future<void> stopped = queue.submit(
                [&started](const std::stop_token& stop) {
                    started = true;
                    while (!stop.stop_requested()) {
                        std::this_thread::sleep_for(1ms);
                    }
                },
                {.stop = cancel.get_token()});
            REQUIRE(eventually([&] { return started.load(); }));
            cancel.request_stop();
            REQUIRE(stopped.wait_for(10s) == std::future_status::ready);
        }
        SECTION("a running task that outlives clear()") {
            gate release;
            std::atomic<bool> started{false};
            std::future<void> running = queue.submit([&](std::stop_token) {
                started = true;
                release.wait();
            });
            std::future<void> waiting =
                queue.submit([&release](std::stop_token) { release.wait(); }, {.priority = 0});
            std::future<void> third = queue.submit([](std::stop_token) {});
            REQUIRE(eventually([&] { return started.load(); }));
            queue.pause(); // so the third surely waits
            static_cast<void>(queue.clear("cleared"));
            release.open();
            REQUIRE(running.wait_for(10s) == std::future_status::ready);
            REQUIRE(waiting.wait_for(10s) == std::future_status::ready);
            REQUIRE(third.wait_for(10s) == std::future_status::ready);
            queue.resume();
            REQUIRE(queue.drain(10s)); // before `release` goes out of scope
        }
        REQUIRE(queue.drain(10s));
    }
    CHECK(permits.granted() > 0);
    CHECK(permits.released() == permits.granted());
    CHECK(permits.double_releases() == 0);
    CHECK(permits.free_count() == permits.permits());
}

TEST_CASE("a lost lease requests its running task's stop token", "[gate][permit][cancel]") {
    // semaphore_gate's permits are revocable: the queue binds each to its task's stop source.
    semaphore_gate permits(1);
    semaphore_queue queue(permits, {.max_concurrency = 1});
    std::promise<void> saw_stop;
    std::atomic<bool> started{false};
    std::future<void> answer = queue.submit([&](const std::stop_token& stop) {
        started = true;
        while (!stop.stop_requested()) {
            std::this_thread::sleep_for(1ms);
        }
        saw_stop.set_value();
    });
    REQUIRE(eventually([&] { return started.load(); }));
    REQUIRE(queue.stats().active == 1);
    permits.lose_all(); // what a pool's renewal thread does when a lease expires
    REQUIRE(saw_stop.get_future().wait_for(10s) == std::future_status::ready);
    REQUIRE(answer.wait_for(10s) == std::future_status::ready);
    REQUIRE(queue.drain(10s));
    CHECK(permits.released() == permits.granted());
}

namespace {
/// A task that wants its permit's fencing token.
struct fenced_job {
    std::uint64_t fencing_token = 0;
    std::atomic<std::uint64_t>* seen = nullptr;
    void operator()(const std::stop_token& /*stop*/) const { seen->store(fencing_token); }
};
} // namespace

TEST_CASE("a gate's prepare hook hands the task what its permit carries", "[gate][permit]") {
    semaphore_gate permits(1);
    btq::bounded_task_queue<fenced_job, btq::thread_executor, semaphore_gate> queue(
        permits, {.max_concurrency = 1});
    std::atomic<std::uint64_t> first{0};
    std::atomic<std::uint64_t> second{0};
    queue.submit(fenced_job{.fencing_token = 0, .seen = &first}).get();
    queue.submit(fenced_job{.fencing_token = 0, .seen = &second}).get();
    CHECK(first.load() == 1);
    CHECK(second.load() == 2); // tokens grow with each grant
}

// ---- an asynchronous gate driving the queue ---------------------------------------------------

TEST_CASE("an asynchronous semaphore gate bounds running tasks by its permits and gets every "
          "permit back under producers and random refusals",
          "[gate][permit][stress]") {
    constexpr std::size_t permit_count = 3;
    semaphore_gate permits(permit_count);
    std::atomic<int> running{0};
    std::atomic<int> peak{0};
    std::atomic<int> over{0};
    std::atomic<int> answered{0};
    constexpr int producers = 4;
    constexpr int per_producer = 300;
    {
        semaphore_queue queue(permits, {.max_concurrency = 6, .capacity = 4096});
        std::atomic<bool> chaos_done{false};
        std::thread chaos([&] {
            std::minstd_rand random(7);
            while (!chaos_done.load()) {
                permits.set_refusing(random() % 3 == 0);
                std::this_thread::sleep_for(std::chrono::microseconds(200 + random() % 800));
            }
            permits.set_refusing(false);
        });
        auto body = [&](std::stop_token) {
            const int now = running.fetch_add(1) + 1;
            if (now > static_cast<int>(permit_count)) {
                ++over;
            }
            int seen = peak.load();
            while (now > seen && !peak.compare_exchange_weak(seen, now)) {
            }
            std::this_thread::yield();
            running.fetch_sub(1);
        };
        std::vector<std::thread> threads;
        for (int p = 0; p < producers; ++p) {
            threads.emplace_back([&, p] {
                std::minstd_rand random(static_cast<unsigned>(p) + 1);
                for (int i = 0; i < per_producer; ++i) {
                    btq::submit_options options;
                    switch (random() % 4) {
                    case 0:
                        options.priority = static_cast<int>(random() % 3);
                        break;
                    case 1:
                        options.deadline = btq::clock::now() + 5s;
                        break;
                    default:
                        break; // plain
                    }
                    queue.submit(
                        body, [&answered](btq::task_result<void>) noexcept { ++answered; },
                        options);
                }
            });
        }
        for (std::thread& thread : threads) {
            thread.join();
        }
        REQUIRE(eventually([&] { return answered.load() == producers * per_producer; }, 60s));
        chaos_done = true;
        chaos.join();
        REQUIRE(queue.drain(30s));
        const btq::queue_stats stats = queue.stats();
        CHECK(stats.held_by_gate == 0);
        CHECK(stats.total_processed + stats.expired == producers * per_producer);
    }
    CHECK(over.load() == 0);
    CHECK(peak.load() <= static_cast<int>(permit_count));
    CHECK(permits.peak_out() <= permit_count);
    CHECK(permits.double_releases() == 0);
    CHECK(permits.released() == permits.granted());
    CHECK(permits.free_count() == permit_count);
}
