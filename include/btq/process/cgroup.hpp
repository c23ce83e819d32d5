/// @file cgroup.hpp
/// @brief A memory cgroup per limited child: where to make them (found from /proc/self/mountinfo
///        and /proc/self/cgroup, or set by the program), making one with its limit, the
///        descriptor the child joins it through before its program runs, whether the kernel's
///        OOM killer stopped it there, and removing it. cgroup v2 (`memory.max`) and v1
///        (`memory.limit_in_bytes`). Linux; the standard library only.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "unique_fd.hpp"

namespace btq::process {

/// A folder under which memory cgroups can be made, and its cgroup version (1 or 2).
struct cgroup_parent {
    int version = 0;  ///< 1 or 2
    std::string path; ///< the folder
};

/// @brief Where the process's memory cgroup is, from /proc/self/cgroup.
struct cgroup_paths {
    std::optional<std::string> v2;        ///< the path of the `0::` line (unified hierarchy)
    std::optional<std::string> v1_memory; ///< the path of the v1 line whose controllers name memory
};

/// @brief Parses /proc/self/cgroup (`hierarchy-ID:controller-list:path` per line).
[[nodiscard]] inline cgroup_paths parse_proc_self_cgroup(std::string_view text) {
    cgroup_paths out;
    for (std::size_t at = 0; at < text.size();) {
        const std::size_t end = std::min(text.find('\n', at), text.size());
        const std::string_view line = text.substr(at, end - at);
        at = end + 1;
        const std::size_t first = line.find(':');
        const std::size_t second =
            first == std::string_view::npos ? first : line.find(':', first + 1);
        if (second == std::string_view::npos) {
            continue;
        }
        const std::string_view id = line.substr(0, first);
        const std::string_view controllers = line.substr(first + 1, second - first - 1);
        const std::string path(line.substr(second + 1));
        if (id == "0" && controllers.empty()) {
            out.v2 = path;
            continue;
        }
        for (std::size_t from = 0; from <= controllers.size();) {
            const std::size_t comma = std::min(controllers.find(',', from), controllers.size());
            if (controllers.substr(from, comma - from) == "memory") {
                out.v1_memory = path;
            }
            from = comma + 1;
        }
    }
    return out;
}

/// @brief The whole text of a file, or nothing if it cannot be read.
[[nodiscard]] inline std::optional<std::string> read_text(const std::string& path) {
    std::ifstream in(path);
    if (!in) {
        return std::nullopt;
    }
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) {
        return std::nullopt;
    }
    return text;
}

namespace detail {

inline std::string read_small_file(const std::string& path) {
    return read_text(path).value_or(std::string());
}

inline bool write_small_file(const std::string& path, std::string_view text) noexcept {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        return false;
    }
    const ssize_t written = ::write(fd, text.data(), text.size());
    ::close(fd);
    return written == static_cast<ssize_t>(text.size());
}

inline bool exists(const std::string& path) noexcept {
    struct stat info {};
    return ::stat(path.c_str(), &info) == 0;
}

/// Whether `list` (space-separated words, as in cgroup.controllers) has `word`.
inline bool has_word(std::string_view list, std::string_view word) noexcept {
    std::size_t at = 0;
    while (at < list.size()) {
        const std::size_t end = list.find_first_of(" \n,", at);
        const std::string_view item =
            list.substr(at, end == std::string_view::npos ? std::string_view::npos : end - at);
        if (item == word) {
            return true;
        }
        if (end == std::string_view::npos) {
            break;
        }
        at = end + 1;
    }
    return false;
}

/// The counter after `key` in a flat-keyed cgroup file ("oom_kill 3\n"), or 0.
inline std::uint64_t keyed_counter(std::string_view text, std::string_view key) noexcept {
    std::size_t at = 0;
    while (at < text.size()) {
        std::size_t end = text.find('\n', at);
        if (end == std::string_view::npos) {
            end = text.size();
        }
        const std::string_view line = text.substr(at, end - at);
        if (line.size() > key.size() && line.substr(0, key.size()) == key &&
            line[key.size()] == ' ') {
            std::uint64_t value = 0;
            for (const char c : line.substr(key.size() + 1)) {
                if (c < '0' || c > '9') {
                    break;
                }
                value = value * 10 + static_cast<std::uint64_t>(c - '0');
            }
            return value;
        }
        at = end + 1;
    }
    return 0;
}

/// A mount of a memory cgroup hierarchy, from one /proc/self/mountinfo line.
struct cgroup_mount {
    int version = 0;
    std::string root;        ///< the part of the hierarchy mounted (mountinfo field 4)
    std::string mount_point; ///< where (field 5)
};

/// The memory hierarchies mounted, v2 and v1, from /proc/self/mountinfo's text.
inline std::vector<cgroup_mount> memory_mounts(std::string_view mountinfo) {
    std::vector<cgroup_mount> mounts;
    std::istringstream lines{std::string(mountinfo)};
    std::string line;
    while (std::getline(lines, line)) {
        std::istringstream fields(line);
        std::vector<std::string> words;
        std::string word;
        while (fields >> word) {
            words.push_back(word);
        }
        // id parent major:minor root mount-point options [optional...] - type source super
        std::size_t dash = 0;
        while (dash < words.size() && words[dash] != "-") {
            ++dash;
        }
        if (dash < 5 || dash + 3 > words.size()) {
            continue;
        }
        const std::string& type = words[dash + 1];
        if (type == "cgroup2") {
            mounts.push_back({2, words[3], words[4]});
        } else if (type == "cgroup" && dash + 3 < words.size() &&
                   has_word(words[dash + 3], "memory")) {
            mounts.push_back({1, words[3], words[4]});
        }
    }
    return mounts;
}

/// `own` as a folder under the mount: `own` less the mounted root (a cgroup namespace or a bind
/// mount shows only part of the hierarchy); empty when `own` is not under it.
inline std::optional<std::string> folder_of(const cgroup_mount& mount, const std::string& own) {
    std::string relative = own;
    if (mount.root != "/") {
        if (own.compare(0, mount.root.size(), mount.root) != 0 ||
            (own.size() > mount.root.size() && own[mount.root.size()] != '/')) {
            return std::nullopt;
        }
        relative = own.substr(mount.root.size());
    }
    if (relative == "/") {
        relative.clear();
    }
    return mount.mount_point + relative;
}

/// Whether memory cgroups can be made under `folder` (version from its files), by this process.
/// v2: `memory` in its cgroup.subtree_control, or enabled there now (refused, EBUSY, when the
/// folder has processes of its own: cgroup v2's rule that only leaves hold processes);
/// v1: a memory cgroup folder.
inline std::optional<cgroup_parent> usable_parent(const std::string& folder) {
    if (::access(folder.c_str(), W_OK) != 0) {
        return std::nullopt;
    }
    const std::string subtree = folder + "/cgroup.subtree_control";
    if (exists(subtree)) {
        if (!has_word(read_small_file(subtree), "memory")) {
            write_small_file(subtree, "+memory");
        }
        if (has_word(read_small_file(subtree), "memory")) {
            return cgroup_parent{2, folder};
        }
        return std::nullopt;
    }
    if (exists(folder + "/memory.limit_in_bytes")) {
        return cgroup_parent{1, folder};
    }
    return std::nullopt;
}

/// Where memory cgroups go when the program has not said: the process's own cgroup, v2 first,
/// else v1, if this process may make cgroups there. Texts are those of /proc/self/mountinfo and
/// /proc/self/cgroup (parameters, so tests can describe a host).
inline std::optional<cgroup_parent> discover_parent(std::string_view mountinfo,
                                                    std::string_view self_cgroup) {
    for (const int version : {2, 1}) {
        const cgroup_paths paths = parse_proc_self_cgroup(self_cgroup);
        const std::optional<std::string>& own = version == 2 ? paths.v2 : paths.v1_memory;
        if (!own) {
            continue;
        }
        for (const cgroup_mount& mount : memory_mounts(mountinfo)) {
            if (mount.version != version) {
                continue;
            }
            if (const std::optional<std::string> folder = folder_of(mount, *own)) {
                if (std::optional<cgroup_parent> parent = usable_parent(*folder)) {
                    return parent;
                }
            }
        }
    }
    return std::nullopt;
}

/// The program's choice and what discovery found, shared by every executor of the process.
struct cgroup_choice {
    std::mutex mutex;
    bool decided = false;
    std::optional<cgroup_parent> parent;
    std::vector<std::string> leftovers; ///< cgroups not yet empty when their child was done
    std::atomic<std::uint64_t> made{0};

    static cgroup_choice& instance() {
        static cgroup_choice choice;
        return choice;
    }
};

/// The parent in use (discovered on first use). Takes the choice's lock.
inline std::optional<cgroup_parent> current_parent() {
    cgroup_choice& choice = cgroup_choice::instance();
    std::lock_guard lock(choice.mutex);
    if (!choice.decided) {
        choice.parent = discover_parent(read_small_file("/proc/self/mountinfo"),
                                        read_small_file("/proc/self/cgroup"));
        choice.decided = true;
    }
    return choice.parent;
}

/// Kills what is left in cgroup `path` (version `version`) and removes it; true once it is gone.
inline bool remove_cgroup(const std::string& path, int version) noexcept {
    if (::rmdir(path.c_str()) == 0 || errno == ENOENT) {
        return true;
    }
    if (errno != EBUSY) {
        return false;
    }
    // Descendants of the child that outlived it (in another process group): killed here, as
    // its process group was.
    if (version == 2 && write_small_file(path + "/cgroup.kill", "1")) {
        return ::rmdir(path.c_str()) == 0;
    }
    try {
        std::istringstream pids(read_small_file(path + "/cgroup.procs"));
        pid_t pid = 0;
        while (pids >> pid) {
            ::kill(pid, SIGKILL);
        }
    } catch (...) {
        return false;
    }
    return ::rmdir(path.c_str()) == 0;
}

} // namespace detail

/// @brief One child's memory cgroup: made with its limit before the child starts, joined by the
///        child (it writes to join_descriptor() before its program runs), removed when this is
///        destroyed (after the child is reaped). Swap is not allowed past the limit either.
class memory_cgroup {
  public:
    /// Makes a cgroup under the parent in use with `limit` bytes. Empty when no parent is in use
    /// or this one cannot be made (the caller falls back to RLIMIT_DATA).
    static std::unique_ptr<memory_cgroup> make(std::size_t limit) {
        const std::optional<cgroup_parent> parent = detail::current_parent();
        if (!parent) {
            return nullptr;
        }
        retry_leftovers();
        detail::cgroup_choice& choice = detail::cgroup_choice::instance();
        const std::uint64_t number = choice.made.fetch_add(1, std::memory_order_relaxed);
        auto made = std::unique_ptr<memory_cgroup>(new memory_cgroup());
        made->version_ = parent->version;
        made->path_ =
            parent->path + "/btq-" + std::to_string(::getpid()) + "-" + std::to_string(number);
        if (::mkdir(made->path_.c_str(), 0755) != 0) {
            return nullptr;
        }
        made->created_ = true;
        const std::string bytes = std::to_string(limit);
        if (made->version_ == 2) {
            if (!detail::write_small_file(made->path_ + "/memory.max", bytes)) {
                return nullptr;
            }
            detail::write_small_file(made->path_ + "/memory.swap.max", "0"); // absent: no swap
            detail::write_small_file(made->path_ + "/memory.oom.group", "1");
        } else {
            if (!detail::write_small_file(made->path_ + "/memory.limit_in_bytes", bytes)) {
                return nullptr;
            }
            // Present only with swap accounting; it must not be below memory.limit_in_bytes.
            detail::write_small_file(made->path_ + "/memory.memsw.limit_in_bytes", bytes);
        }
        made->join_.reset(::open((made->path_ + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC));
        if (!made->join_) {
            return nullptr;
        }
        return made;
    }

    memory_cgroup(const memory_cgroup&) = delete;
    memory_cgroup& operator=(const memory_cgroup&) = delete;
    memory_cgroup(memory_cgroup&&) = delete;
    memory_cgroup& operator=(memory_cgroup&&) = delete;

    /// Removes the cgroup; one that still holds processes (the child's descendants in other
    /// process groups) has them killed and is removed then, or at a later make().
    ~memory_cgroup() {
        join_.reset();
        if (created_ && !detail::remove_cgroup(path_, version_)) {
            detail::cgroup_choice& choice = detail::cgroup_choice::instance();
            std::lock_guard lock(choice.mutex);
            choice.leftovers.push_back(std::to_string(version_) + path_);
        }
    }

    /// The descriptor of its cgroup.procs: writing "0" to it moves the writer in.
    [[nodiscard]] int join_descriptor() const noexcept { return join_.get(); }

    /// Whether the kernel's OOM killer killed a process in it (the limit was reached).
    [[nodiscard]] bool oom_killed() const {
        const std::string events = detail::read_small_file(
            path_ + (version_ == 2 ? "/memory.events" : "/memory.oom_control"));
        return detail::keyed_counter(events, "oom_kill") > 0;
    }

    /// @brief The cgroup version, 1 or 2.
    [[nodiscard]] int version() const noexcept { return version_; }
    /// @brief The cgroup's folder.
    [[nodiscard]] const std::string& path() const noexcept { return path_; }

  private:
    memory_cgroup() = default;

    /// Tries again to remove the cgroups that were not empty when their child was done.
    static void retry_leftovers() {
        detail::cgroup_choice& choice = detail::cgroup_choice::instance();
        std::vector<std::string> pending;
        {
            std::lock_guard lock(choice.mutex);
            pending.swap(choice.leftovers);
        }
        std::vector<std::string> still;
        for (const std::string& entry : pending) {
            if (!detail::remove_cgroup(entry.substr(1), entry[0] - '0')) {
                still.push_back(entry);
            }
        }
        if (!still.empty()) {
            std::lock_guard lock(choice.mutex);
            choice.leftovers.insert(choice.leftovers.end(), still.begin(), still.end());
        }
    }

    int version_ = 0;
    std::string path_;
    bool created_ = false;
    unique_fd join_;
};

} // namespace btq::process
