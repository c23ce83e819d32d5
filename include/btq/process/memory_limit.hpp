/// @file memory_limit.hpp
/// @brief What both process executors use to hold a child to a memory limit: the kernel limit
///        set before the child's program runs (a memory cgroup, or RLIMIT_DATA), the event
///        thread's look at a running child's memory (/proc/PID/status), the child's peak from
///        its final accounting, and the rule that tells a child stopped by the kernel limit.
#pragma once

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "cgroup.hpp"

namespace btq {

/// @brief How a memory limit (command::memory_limit, worker_pool_options::memory_limit) is held.
/// Each way is a kernel limit set before the child's program runs plus the event thread's look at
/// the child's resident size every memory_check_interval (it kills the child's process group
/// above the limit).
enum class memory_limit_mechanism {
    /// RLIMIT_DATA: the kernel refuses private writable memory past the limit (an allocation
    /// fails; the program ends as it handles that).
    rlimit_and_watchdog,
    /// A cgroup v1 memory cgroup per child (`memory.limit_in_bytes`): the kernel reclaims the
    /// child's page cache, then its OOM killer kills it, at the limit.
    cgroup_v1_and_watchdog,
    /// A cgroup v2 cgroup per child (`memory.max`, `memory.swap.max` 0, `memory.oom.group` 1).
    cgroup_v2_and_watchdog,
};

/// @brief The mechanism new limited children get: a cgroup one when this process may make
///        memory cgroups (found on first use, or set by set_memory_cgroup_parent()), else
///        `rlimit_and_watchdog`. One child whose cgroup cannot be made gets RLIMIT_DATA.
/// @code
/// std::printf("%s\n", btq::to_string(btq::active_memory_limit_mechanism()).data());
/// @endcode
[[nodiscard]] inline memory_limit_mechanism active_memory_limit_mechanism() {
    const std::optional<process::cgroup_parent> parent = process::detail::current_parent();
    if (!parent) {
        return memory_limit_mechanism::rlimit_and_watchdog;
    }
    return parent->version == 2 ? memory_limit_mechanism::cgroup_v2_and_watchdog
                                : memory_limit_mechanism::cgroup_v1_and_watchdog;
}

/// @brief Chooses where limited children get their memory cgroups, for every executor of the
///        process, from the next limited child on. Thread-safe.
/// @param parent empty (the default): found automatically, the process's own cgroup (v2 first,
///        then v1) when it may make cgroups there; `""`: none, RLIMIT_DATA; a folder: that one (a
///        v2 cgroup with `memory` in, or enabled by btq in, its cgroup.subtree_control, or a v1
///        memory cgroup), e.g. a subtree delegated to the service.
/// @return The mechanism in use from now on.
/// @throws std::invalid_argument for a folder where this process cannot make memory cgroups.
inline memory_limit_mechanism set_memory_cgroup_parent(std::optional<std::string> parent) {
    std::optional<process::cgroup_parent> chosen;
    bool decided = true;
    if (!parent) {
        decided = false;
    } else if (!parent->empty()) {
        chosen = process::detail::usable_parent(*parent);
        if (!chosen) {
            throw std::invalid_argument("btq: no memory cgroups can be made under '" + *parent +
                                        "'");
        }
    }
    {
        process::detail::cgroup_choice& choice = process::detail::cgroup_choice::instance();
        std::lock_guard lock(choice.mutex);
        choice.decided = decided;
        choice.parent = std::move(chosen);
    }
    return active_memory_limit_mechanism();
}

/// @brief The mechanism's name as written in the enum, for logs.
[[nodiscard]] constexpr std::string_view to_string(memory_limit_mechanism mechanism) noexcept {
    switch (mechanism) {
    case memory_limit_mechanism::rlimit_and_watchdog:
        return "rlimit_and_watchdog";
    case memory_limit_mechanism::cgroup_v1_and_watchdog:
        return "cgroup_v1_and_watchdog";
    case memory_limit_mechanism::cgroup_v2_and_watchdog:
        return "cgroup_v2_and_watchdog";
    }
    return "unknown";
}

/// @brief How often the event thread looks at the resident size of a child that has a memory
///        limit (subprocess children while they run; pool workers while a request runs). A
///        look reads /proc/PID/status, about 10 µs.
inline constexpr std::chrono::milliseconds memory_check_interval{20};

namespace process {

/// One look at a running process's memory, in bytes (0 for what could not be read).
struct memory_sample {
    std::size_t resident = 0;      ///< VmRSS: resident now (anonymous, file-backed, shared)
    std::size_t peak_resident = 0; ///< VmHWM: most resident since its program started
    std::size_t data = 0;          ///< VmData: private writable memory, what RLIMIT_DATA counts
};

namespace detail {

/// The number after `key` in /proc/PID/status text ("VmRSS:\t  1234 kB"), in bytes.
inline std::size_t status_kilobytes(std::string_view text, std::string_view key) noexcept {
    const std::size_t at = text.find(key);
    if (at == std::string_view::npos) {
        return 0;
    }
    std::size_t value = 0;
    for (std::size_t i = at + key.size(); i < text.size() && text[i] != '\n'; ++i) {
        if (text[i] >= '0' && text[i] <= '9') {
            value = value * 10 + static_cast<std::size_t>(text[i] - '0');
        }
    }
    return value * 1024;
}

} // namespace detail

/// Reads /proc/PID/status. Empty when the process is gone or is a zombie (its memory is freed).
inline std::optional<memory_sample> sample_memory(pid_t pid) noexcept {
    std::array<char, 48> path{};
    const int length =
        std::snprintf(path.data(), path.size(), "/proc/%d/status", static_cast<int>(pid));
    if (length <= 0) {
        return std::nullopt;
    }
    const int fd = ::open(path.data(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return std::nullopt;
    }
    std::array<char, 4096> buffer; // NOLINT(cppcoreguidelines-pro-type-member-init)
    std::size_t filled = 0;
    for (;;) {
        const ssize_t got = ::read(fd, buffer.data() + filled, buffer.size() - filled);
        if (got <= 0) {
            break;
        }
        filled += static_cast<std::size_t>(got);
        if (filled == buffer.size()) {
            break;
        }
    }
    ::close(fd);
    const std::string_view text(buffer.data(), filled);
    if (text.find("VmRSS:") == std::string_view::npos) {
        return std::nullopt; // a zombie, or a kernel thread
    }
    memory_sample sample;
    sample.resident = detail::status_kilobytes(text, "VmRSS:");
    sample.peak_resident = detail::status_kilobytes(text, "VmHWM:");
    sample.data = detail::status_kilobytes(text, "VmData:");
    return sample;
}

/// What the event thread has seen of one limited child while it ran.
struct memory_watch {
    std::size_t limit = 0;            ///< bytes
    std::size_t largest_resident = 0; ///< largest VmHWM seen
    std::size_t largest_data = 0;     ///< largest VmData seen
    std::size_t resident_at_stop = 0; ///< VmRSS when it was stopped above the limit, else 0
    /// Its memory cgroup (moved in from child_process::cgroup); empty under RLIMIT_DATA.
    std::unique_ptr<memory_cgroup> cgroup;

    /// Looks at `pid` once. Returns true when it is above the limit (the caller stops it).
    bool check(pid_t pid) noexcept {
        const std::optional<memory_sample> sample = sample_memory(pid);
        if (!sample) {
            return false;
        }
        largest_resident = std::max(largest_resident, sample->peak_resident);
        largest_data = std::max(largest_data, sample->data);
        if (sample->resident > limit) {
            resident_at_stop = sample->resident;
            return true;
        }
        return false;
    }
};

/// The peak resident size of a reaped child, in bytes, from its rusage (ru_maxrss, KiB).
///
/// Linux carries the spawning process's own peak across exec into the child's ru_maxrss (the
/// image the child replaced was the parent's). So ru_maxrss is the child's own peak only when it
/// is above this process's own peak (RUSAGE_SELF); otherwise the child's peak is at most that,
/// and the largest VmHWM the event thread saw (`sampled`, 0 when it never looked) is reported
/// when there is one; with none, ru_maxrss stays as the upper bound it is.
inline std::size_t peak_resident_of(const rusage& usage, std::size_t sampled) noexcept {
    const auto reported = static_cast<std::size_t>(usage.ru_maxrss) * 1024;
    rusage self{};
    if (::getrusage(RUSAGE_SELF, &self) != 0) {
        return std::max(reported, sampled);
    }
    const auto own_peak = static_cast<std::size_t>(self.ru_maxrss) * 1024;
    if (reported > own_peak || sampled == 0) {
        return std::max(reported, sampled);
    }
    return sampled;
}

/// The rule for a child the kernel limit stopped. In a memory cgroup, the kernel says so: its
/// OOM killer killed a process there. Under RLIMIT_DATA an allocation fails rather than kills,
/// so the program ends as it handles that (an exit code, an abort, a crash), and nothing the
/// parent can read says so: a child with a limit that did not succeed (ended by a signal, or
/// exited non-zero) is counted as stopped by its limit when it came within a quarter of it (its
/// peak resident size or its largest data size seen reached 3/4 of the limit).
[[nodiscard]] inline bool ended_at_limit(std::size_t limit, std::size_t peak_resident,
                                         const memory_watch& seen) {
    if (seen.cgroup) {
        return seen.cgroup->oom_killed();
    }
    const std::size_t near = limit - limit / 4;
    return peak_resident >= near || seen.largest_resident >= near || seen.largest_data >= near;
}

} // namespace process
} // namespace btq
