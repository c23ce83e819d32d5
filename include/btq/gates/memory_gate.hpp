/// @file gates/memory_gate.hpp
/// @brief memory_gate: a start gate (btq::start_gate) that starts no task while the host, or
///        the cgroup the process runs in, is short of memory or under memory pressure. Linux;
///        no dependency beyond the standard library.
#pragma once

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <functional>
#include <iterator>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "../detail/waker_registry.hpp"
#include "../process/cgroup.hpp"
#include "../start_gate.hpp"

namespace btq {

/// @brief One look at the memory the process may still use. Every field is empty when its source
///        could not be read (no such file, unknown format): an empty field never holds a task.
struct memory_reading {
    /// `MemAvailable` of /proc/meminfo, in bytes: what the kernel estimates can be allocated
    /// without swapping (free memory plus reclaimable page cache).
    std::optional<std::uint64_t> mem_available{};
    /// Limit minus usage of the cgroup the process runs in, in bytes, at the tightest level of
    /// its hierarchy (v2 `memory.max` - `memory.current`, v1 `memory.limit_in_bytes` -
    /// `memory.usage_in_bytes`; usage includes page cache). Empty when no level has a limit.
    std::optional<std::uint64_t> cgroup_available{};
    /// `some avg10` of /proc/pressure/memory: the share of the last 10 s (percent, 0-100) in
    /// which at least one task stalled waiting for memory.
    std::optional<double> pressure_some_avg10{};

    /// @brief The lower of `mem_available` and `cgroup_available` (empty if both are).
    [[nodiscard]] std::optional<std::uint64_t> available_bytes() const noexcept {
        if (mem_available && cgroup_available) {
            return std::min(*mem_available, *cgroup_available);
        }
        return mem_available ? mem_available : cgroup_available;
    }
};

/// @brief The parsers of the kernel's memory files, and the default reading built from them.
///        Each parser takes the whole text of one file.
namespace memory_readings {

/// @brief `MemAvailable:` of /proc/meminfo (given in kB), in bytes.
[[nodiscard]] inline std::optional<std::uint64_t> parse_meminfo_available(std::string_view text) {
    constexpr std::string_view key = "MemAvailable:";
    for (std::size_t at = 0; at < text.size();) {
        const std::size_t end = std::min(text.find('\n', at), text.size());
        std::string_view line = text.substr(at, end - at);
        at = end + 1;
        if (!line.starts_with(key)) {
            continue;
        }
        line.remove_prefix(key.size());
        const std::size_t digits = line.find_first_not_of(' ');
        if (digits == std::string_view::npos) {
            return std::nullopt;
        }
        std::uint64_t kib = 0;
        const auto [rest, error] =
            std::from_chars(line.data() + digits, line.data() + line.size(), kib);
        if (error != std::errc{} || kib > (UINT64_MAX >> 10)) {
            return std::nullopt;
        }
        return kib << 10;
    }
    return std::nullopt;
}

/// @brief `some avg10=` of /proc/pressure/memory (or a cgroup's memory.pressure), in percent.
[[nodiscard]] inline std::optional<double> parse_pressure_some_avg10(std::string_view text) {
    for (std::size_t at = 0; at < text.size();) {
        const std::size_t end = std::min(text.find('\n', at), text.size());
        const std::string_view line = text.substr(at, end - at);
        at = end + 1;
        if (!line.starts_with("some ")) {
            continue;
        }
        const std::size_t key = line.find("avg10=");
        if (key == std::string_view::npos) {
            return std::nullopt;
        }
        const std::string number(line.substr(key + 6, line.find(' ', key) - (key + 6)));
        try {
            std::size_t used = 0;
            const double value = std::stod(number, &used);
            if (used == 0 || value < 0) {
                return std::nullopt;
            }
            return value;
        } catch (...) {
            return std::nullopt;
        }
    }
    return std::nullopt;
}

/// @brief A cgroup byte count (`memory.max`, `memory.current`, `memory.limit_in_bytes`,
///        `memory.usage_in_bytes`). Empty for "max" (v2: no limit), for v1's "no limit" value
///        (a page-rounded 2^63 - 1; anything at or above 2^60 is taken as none), and for text
///        that is not a number.
[[nodiscard]] inline std::optional<std::uint64_t> parse_cgroup_bytes(std::string_view text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) {
        text.remove_suffix(1);
    }
    std::uint64_t value = 0;
    const auto [rest, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc{} || rest != text.data() + text.size() || text.empty() ||
        value >= (std::uint64_t{1} << 60)) {
        return std::nullopt;
    }
    return value;
}

using process::cgroup_paths;
using process::parse_proc_self_cgroup;
using process::read_text;

/// @brief The tightest `limit - usage` of the cgroup directory `leaf` and its parents up to
///        `root` (a limit anywhere above binds too). Empty when no level has a limit.
[[nodiscard]] inline std::optional<std::uint64_t> cgroup_headroom(const std::string& root,
                                                                  std::string leaf,
                                                                  std::string_view limit_file,
                                                                  std::string_view usage_file) {
    std::optional<std::uint64_t> tightest;
    for (;;) {
        const std::optional<std::string> limit_text =
            read_text(leaf + "/" + std::string(limit_file));
        const std::optional<std::string> usage_text =
            read_text(leaf + "/" + std::string(usage_file));
        if (limit_text && usage_text) {
            const std::optional<std::uint64_t> limit = parse_cgroup_bytes(*limit_text);
            const std::optional<std::uint64_t> usage = parse_cgroup_bytes(*usage_text);
            if (limit && usage) {
                const std::uint64_t headroom = *limit - std::min(*limit, *usage);
                tightest = tightest ? std::min(*tightest, headroom) : headroom;
            }
        }
        if (leaf.size() <= root.size()) {
            return tightest;
        }
        leaf.erase(std::max(leaf.rfind('/'), root.size()));
    }
}

/// @brief The cgroup directory for `path` under the mount `root`, or `root` itself when the
///        path is not visible from here (a cgroup namespace shows the process its own cgroup as
///        the root of the mount).
[[nodiscard]] inline std::string cgroup_directory(const std::string& root, const std::string& path,
                                                  std::string_view probe_file) {
    std::string directory = root;
    if (path != "/" && !path.empty()) {
        directory += path;
    }
    if (read_text(directory + "/" + std::string(probe_file))) {
        return directory;
    }
    return root;
}

/// @brief The default reading: /proc/meminfo, the process's cgroup (v2, else v1) and
///        /proc/pressure/memory. A few small reads; call it off any lock.
[[nodiscard]] inline memory_reading read_system() {
    memory_reading out;
    if (const auto meminfo = read_text("/proc/meminfo")) {
        out.mem_available = parse_meminfo_available(*meminfo);
    }
    if (const auto pressure = read_text("/proc/pressure/memory")) {
        out.pressure_some_avg10 = parse_pressure_some_avg10(*pressure);
    }
    if (const auto self = read_text("/proc/self/cgroup")) {
        const cgroup_paths paths = parse_proc_self_cgroup(*self);
        if (paths.v2) {
            const std::string root = "/sys/fs/cgroup";
            out.cgroup_available =
                cgroup_headroom(root, cgroup_directory(root, *paths.v2, "memory.current"),
                                "memory.max", "memory.current");
        }
        if (!out.cgroup_available && paths.v1_memory) {
            const std::string root = "/sys/fs/cgroup/memory";
            out.cgroup_available = cgroup_headroom(
                root, cgroup_directory(root, *paths.v1_memory, "memory.usage_in_bytes"),
                "memory.limit_in_bytes", "memory.usage_in_bytes");
        }
    }
    return out;
}

} // namespace memory_readings

/// @brief The rules and the source of a memory_gate.
/// @code
/// btq::memory_gate memory({.min_available_bytes = 512ull << 20, .max_pressure = 20.0});
/// @endcode
struct memory_gate_options {
    /// Hold tasks while memory_reading::available_bytes() is below this. 0 = no floor.
    std::uint64_t min_available_bytes = 0;
    /// Hold tasks while memory_reading::pressure_some_avg10 is above this (percent). Empty =
    /// pressure is not looked at.
    std::optional<double> max_pressure{};
    /// How often the gate's thread reads again. A reading that recovers wakes the queues at
    /// once, so this bounds how late a held task starts after the memory came back.
    std::chrono::milliseconds interval{200};
    /// Progress guarantee: while none of this gate's permits is out (nothing it admitted is
    /// running), one task may start however low the reading, so a queue never stalls forever on
    /// a host that will not recover. On by default.
    bool progress_guarantee = true;
    /// Where readings come from: called on the gate's thread (and by refresh()), never under a
    /// queue's lock. Empty = memory_readings::read_system. Tests inject their own.
    std::function<memory_reading()> source{};
};

/// @brief A start gate (btq::start_gate) that holds tasks while memory is short: below a floor of
///        available memory (the host's `MemAvailable` or the cgroup's limit minus usage,
///        whichever is lower) or above a memory pressure threshold.
///
/// A background thread reads every `interval` (memory_readings::read_system by default); the
/// decision is made on that thread, so try_acquire() is two atomic loads and an increment, and
/// never touches a file under a queue's lock. When a reading admits again after a refusal, the
/// gate wakes every attached queue from that thread (with a synchronous executor a woken queue
/// may run its tasks there: readings then wait for them). One gate may serve several queues;
/// the progress guarantee counts the permits of all of them.
///
/// The permits carry nothing and are never lost (not btq::revocable_permit): the gate decides
/// when tasks start, not how much they may use; per-task limits are
/// btq::command::memory_limit's job.
///
/// @warning Destroy the gate only after every queue attached to it.
/// @code
/// btq::memory_gate memory({.min_available_bytes = 256ull << 20, .max_pressure = 25.0});
/// btq::bounded_task_queue<std::function<void()>, btq::thread_executor, btq::memory_gate> queue(
///     memory, {.max_concurrency = 4});
/// queue.submit([] { build_index(); });  // starts when there are 256 MiB to spare
/// @endcode
class memory_gate {
  public:
    /// @brief One admitted start. Move-only; destroying it gives the start back (the queue does
    ///        so when its task ends). A moved-from permit releases nothing.
    class permit_type {
      public:
        /// @brief Takes over `other`'s start; the moved-from permit releases nothing.
        permit_type(permit_type&& other) noexcept
            : gate_(std::exchange(other.gate_, nullptr)), forced_(other.forced_) {}
        /// @brief Gives back the start held (if any), then takes over `other`'s.
        permit_type& operator=(permit_type&& other) noexcept {
            if (this != &other) {
                release();
                gate_ = std::exchange(other.gate_, nullptr);
                forced_ = other.forced_;
            }
            return *this;
        }
        permit_type(const permit_type&) = delete;
        permit_type& operator=(const permit_type&) = delete;
        ~permit_type() { release(); }

        /// @brief True if the progress guarantee admitted it against the reading.
        [[nodiscard]] bool forced() const noexcept { return forced_; }

      private:
        friend class memory_gate;
        permit_type(memory_gate* gate, bool forced) noexcept : gate_(gate), forced_(forced) {}
        void release() noexcept {
            if (gate_ != nullptr) {
                std::exchange(gate_, nullptr)->release();
            }
        }
        memory_gate* gate_;
        bool forced_;
    };

    /// @brief Takes a first reading on the calling thread, then starts the gate's thread.
    explicit memory_gate(memory_gate_options options = {})
        : options_(std::move(options)), reading_(read_now().value_or(memory_reading{})) {
        admitting_.store(admits(options_, reading_), std::memory_order_seq_cst);
        thread_ = std::thread([this] { run(); });
    }

    memory_gate(const memory_gate&) = delete;
    memory_gate& operator=(const memory_gate&) = delete;
    memory_gate(memory_gate&&) = delete;
    memory_gate& operator=(memory_gate&&) = delete;

    /// @brief Stops the gate's thread. Every queue attached must be gone already.
    ~memory_gate() {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        tick_.notify_all();
        thread_.join();
    }

    /// @brief The rule: true if `reading` admits a start under `options` (missing fields
    ///        hold nothing).
    [[nodiscard]] static bool admits(const memory_gate_options& options,
                                     const memory_reading& reading) noexcept {
        const std::optional<std::uint64_t> available = reading.available_bytes();
        if (options.min_available_bytes > 0 && available &&
            *available < options.min_available_bytes) {
            return false;
        }
        return !(options.max_pressure && reading.pressure_some_avg10 &&
                 *reading.pressure_some_avg10 > *options.max_pressure);
    }

    /// @brief btq::start_gate: a permit if the last reading admits, or, with the progress
    ///        guarantee, if none of this gate's permits is out. Called under a queue's lock;
    ///        lock-free, never blocks.
    [[nodiscard]] std::optional<permit_type>
    try_acquire(const start_request& /*request*/) noexcept {
        if (admitting_.load(std::memory_order_seq_cst)) {
            out_.fetch_add(1, std::memory_order_seq_cst);
            return permit_type(this, false);
        }
        // Say a queue waits before looking again: a reading (or a release) that admits after
        // this sees it and wakes the queue, so no refusal is left without a wake-up.
        demand_.store(true, std::memory_order_seq_cst);
        if (admitting_.load(std::memory_order_seq_cst)) {
            out_.fetch_add(1, std::memory_order_seq_cst);
            return permit_type(this, false);
        }
        std::size_t none = 0;
        if (options_.progress_guarantee &&
            out_.compare_exchange_strong(none, 1, std::memory_order_seq_cst)) {
            forced_.fetch_add(1, std::memory_order_relaxed);
            return permit_type(this, true);
        }
        return std::nullopt;
    }

    /// @brief btq::returns_unstarted: takes back a permit whose task did not start (a later
    ///        gate of a btq::gate_chain refused), as if it had never been granted, and wakes
    ///        nobody: the gate that refused wakes the queue. Called under a queue's lock.
    void return_unstarted(permit_type&& permit) noexcept {
        if (permit.gate_ != this) {
            return;
        }
        permit.gate_ = nullptr;
        out_.fetch_sub(1, std::memory_order_seq_cst);
        if (permit.forced_) {
            forced_.fetch_sub(1, std::memory_order_relaxed);
        }
    }

    /// @brief btq::start_gate: called by a queue's constructor.
    void attach(start_gate_waker waker) { wakers_.attach(waker); }

    /// @brief btq::start_gate: called by a queue's destructor. Returns once no wake-up of any
    ///        queue runs on another thread, so `waker` is never called after it.
    void detach(start_gate_waker waker) { wakers_.detach(waker); }

    /// @brief Reads now (on the calling thread), decides, and wakes the queues if the reading
    ///        admits after a refusal. The gate's thread does this every `interval`; tests call
    ///        it to drive the gate step by step. Must not be called under a queue's lock.
    void refresh() {
        std::optional<memory_reading> reading = read_now();
        bool admit = false;
        {
            std::lock_guard lock(mutex_);
            if (reading) {
                reading_ = *reading; // a source that throws leaves the last reading in force
            }
            admit = admits(options_, reading_);
            admitting_.store(admit, std::memory_order_seq_cst);
            ++readings_;
        }
        if (admit && demand_.exchange(false, std::memory_order_seq_cst)) {
            wakers_.wake_all();
        }
    }

    /// @brief The last reading taken.
    [[nodiscard]] memory_reading last_reading() const {
        std::lock_guard lock(mutex_);
        return reading_;
    }
    /// @brief Readings taken since construction (the first included).
    [[nodiscard]] std::uint64_t readings() const {
        std::lock_guard lock(mutex_);
        return readings_;
    }
    /// @brief True if the last reading admits starts.
    [[nodiscard]] bool admitting() const noexcept {
        return admitting_.load(std::memory_order_seq_cst);
    }
    /// @brief Permits out now: tasks admitted by this gate that are still running.
    [[nodiscard]] std::size_t permits_out() const noexcept {
        return out_.load(std::memory_order_seq_cst);
    }
    /// @brief Starts the progress guarantee admitted against the reading, in total.
    [[nodiscard]] std::uint64_t forced_starts() const noexcept {
        return forced_.load(std::memory_order_relaxed);
    }
    /// @brief The options the gate was made with.
    [[nodiscard]] const memory_gate_options& options() const noexcept { return options_; }

  private:
    [[nodiscard]] std::optional<memory_reading> read_now() const noexcept {
        try {
            return options_.source ? options_.source() : memory_readings::read_system();
        } catch (...) {
            return std::nullopt;
        }
    }

    void run() {
        std::unique_lock lock(mutex_);
        while (!stopping_) {
            if (tick_.wait_for(lock, options_.interval, [this] { return stopping_; })) {
                break;
            }
            lock.unlock();
            refresh();
            lock.lock();
        }
    }

    void release() noexcept {
        // The last permit back while the reading refuses: the progress guarantee may start one.
        if (out_.fetch_sub(1, std::memory_order_seq_cst) == 1 && options_.progress_guarantee &&
            !admitting_.load(std::memory_order_seq_cst) &&
            demand_.exchange(false, std::memory_order_seq_cst)) {
            wakers_.wake_all();
        }
    }

    const memory_gate_options options_;

    mutable std::mutex mutex_; // the reading and the thread's stop
    memory_reading reading_;
    std::uint64_t readings_ = 1;
    bool stopping_ = false;
    std::condition_variable tick_;

    std::atomic<bool> admitting_{true};
    std::atomic<bool> demand_{false}; // a start was refused since the last wake-up
    std::atomic<std::size_t> out_{0};
    std::atomic<std::uint64_t> forced_{0};

    detail::waker_registry wakers_;

    std::thread thread_; // last: started once everything above exists
};

static_assert(start_gate<memory_gate>);

} // namespace btq
