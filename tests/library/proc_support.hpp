// Reading processes from /proc, for the tests of the process executors.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <functional>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace btq_test {

/// What /proc/<pid>/stat says about a process.
struct process_info {
    pid_t pid = 0;
    std::string name;
    char state = '?';
    pid_t parent = 0;
    pid_t group = 0;
    unsigned long long started = 0; // clock ticks after boot
};

inline std::optional<process_info> parse_stat(std::string_view text) {
    const auto open = text.find('(');
    const auto close = text.rfind(')');
    if (open == std::string_view::npos || close == std::string_view::npos || close < open) {
        return std::nullopt;
    }
    process_info info;
    info.pid =
        static_cast<pid_t>(std::strtol(std::string(text.substr(0, open)).c_str(), nullptr, 10));
    info.name = std::string(text.substr(open + 1, close - open - 1));
    std::istringstream fields{std::string(text.substr(close + 1))};
    long parent = 0;
    long group = 0;
    fields >> info.state >> parent >> group;
    std::string skipped;
    for (int field = 6; field <= 21; ++field) {
        fields >> skipped;
    }
    fields >> info.started;
    if (!fields) {
        return std::nullopt;
    }
    info.parent = static_cast<pid_t>(parent);
    info.group = static_cast<pid_t>(group);
    return info;
}

inline std::optional<process_info> read_process(pid_t pid) {
    const std::string path = "/proc/" + std::to_string(pid) + "/stat";
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return std::nullopt;
    }
    std::array<char, 1024> buffer{};
    const ssize_t length = ::read(fd, buffer.data(), buffer.size());
    ::close(fd);
    if (length <= 0) {
        return std::nullopt;
    }
    return parse_stat(std::string_view(buffer.data(), static_cast<std::size_t>(length)));
}

/// Every process visible in /proc that `keep` accepts.
inline std::vector<process_info> processes(const std::function<bool(const process_info&)>& keep) {
    std::vector<process_info> found;
    DIR* directory = ::opendir("/proc");
    if (directory == nullptr) {
        return found;
    }
    while (const dirent* entry = ::readdir(directory)) {
        const std::string_view name(entry->d_name);
        if (name.empty() ||
            !std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; })) {
            continue;
        }
        if (auto info = read_process(static_cast<pid_t>(std::stol(std::string(name))))) {
            if (keep(*info)) {
                found.push_back(std::move(*info));
            }
        }
    }
    ::closedir(directory);
    return found;
}

inline std::vector<process_info> children_of(pid_t parent) {
    return processes([parent](const process_info& p) { return p.parent == parent; });
}

inline std::set<pid_t> pids_of(const std::vector<process_info>& list) {
    std::set<pid_t> pids;
    for (const auto& p : list) {
        pids.insert(p.pid);
    }
    return pids;
}

/// True when no process of group `group` runs any more: kill(-group, 0) fails with ESRCH, or
/// the only members left are zombies that are not ours. (They are orphans already dead and
/// waiting for init to reap them; some container init processes never do.)
inline bool group_gone(pid_t group) {
    if (::kill(-group, 0) == -1 && errno == ESRCH) {
        return true;
    }
    const pid_t self = ::getpid();
    const auto members = processes([group](const process_info& p) { return p.group == group; });
    return std::all_of(members.begin(), members.end(), [self](const process_info& p) {
        return p.state == 'Z' && p.parent != self;
    });
}

} // namespace btq_test
