/// @file spawn.hpp
/// @brief Starts a btq::command with posix_spawn: pipes on 0, 1 and 2, every other descriptor
///        closed, its own process group, default signal mask and dispositions, and a pidfd.
#pragma once

#include <csignal>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "command.hpp"
#include "unique_fd.hpp"

extern char** environ; // NOLINT(readability-redundant-declaration)

namespace btq::process {

/// A started child: its pid (also its process group id), a pidfd, and the parent's ends of its
/// standard streams (input non-blocking; output blocking, to be read once per readiness event).
struct child_process {
    pid_t pid = 0;
    unique_fd pidfd;
    unique_fd standard_input;  ///< write end; invalid when there was nothing to write
    unique_fd standard_output; ///< read end
    unique_fd standard_error;  ///< read end
    std::chrono::steady_clock::time_point started{}; ///< just before posix_spawn
    std::chrono::nanoseconds spawn_time{0};
};

namespace detail {

/// The child's environment as "NAME=value" strings.
inline std::vector<std::string> environment_of(const command& cmd) {
    std::vector<std::string> entries;
    if (cmd.environment_source == environment_mode::inherit) {
        std::set<std::string_view> replaced;
        for (const auto& [name, value] : cmd.environment) {
            replaced.insert(name);
        }
        for (const std::string& name : cmd.unset_environment) {
            replaced.insert(name);
        }
        for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
            const std::string_view text(*entry);
            const std::string_view name = text.substr(0, text.find('='));
            if (!replaced.contains(name)) {
                entries.emplace_back(text);
            }
        }
    }
    for (const auto& [name, value] : cmd.environment) {
        std::string entry;
        entry.reserve(name.size() + 1 + value.size());
        entry.append(name).append(1, '=').append(value);
        entries.push_back(std::move(entry));
    }
    return entries;
}

inline std::vector<char*> pointers_to(std::vector<std::string>& strings) {
    std::vector<char*> pointers;
    pointers.reserve(strings.size() + 1);
    for (std::string& text : strings) {
        pointers.push_back(text.data());
    }
    pointers.push_back(nullptr);
    return pointers;
}

/// RAII for the posix_spawn attribute and file-action objects.
struct spawn_setup {
    posix_spawn_file_actions_t actions{};
    posix_spawnattr_t attributes{};
    spawn_setup() {
        posix_spawn_file_actions_init(&actions);
        posix_spawnattr_init(&attributes);
    }
    spawn_setup(const spawn_setup&) = delete;
    spawn_setup& operator=(const spawn_setup&) = delete;
    spawn_setup(spawn_setup&&) = delete;
    spawn_setup& operator=(spawn_setup&&) = delete;
    ~spawn_setup() {
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attributes);
    }
};

/// A descriptor of /dev/null opened once (close-on-exec): the standard input of every child
/// that is given no input, which saves a pipe per spawn. -1 if it cannot be opened.
inline int shared_null_input() noexcept {
    static const int null_input = [] {
        const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fd > 2) {
            return fd;
        }
        const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
        ::close(fd);
        return moved;
    }();
    return null_input;
}

inline void check(int error, const command& cmd, const char* what) {
    if (error != 0) {
        throw spawn_error(error, cmd.program, what);
    }
}

} // namespace detail

/// Starts `cmd`. Throws btq::spawn_error (with the errno) if it cannot be started: program not
/// found or not executable, working directory missing, out of processes or descriptors.
/// `extra_fds[i]` becomes descriptor 3 + i in the child (the worker protocol's channels);
/// every other descriptor above 2 is closed.
inline child_process spawn(const command& cmd, std::span<const int> extra_fds = {}) {
    if (cmd.program.empty()) {
        throw spawn_error(EINVAL, cmd.program, "empty program name");
    }
    std::vector<std::string> argument_strings;
    argument_strings.reserve(cmd.arguments.size() + 1);
    argument_strings.push_back(cmd.program);
    argument_strings.insert(argument_strings.end(), cmd.arguments.begin(), cmd.arguments.end());
    std::vector<std::string> environment_strings = detail::environment_of(cmd);
    std::vector<char*> argv = detail::pointers_to(argument_strings);
    std::vector<char*> envp = detail::pointers_to(environment_strings);

    pipe_ends input;
    pipe_ends output;
    pipe_ends error;
    const int null_input = cmd.standard_input.empty() ? detail::shared_null_input() : -1;
    try {
        if (null_input < 0) {
            input = make_pipe();
        }
        output = make_pipe();
        error = make_pipe();
    } catch (const std::system_error& e) {
        throw spawn_error(e.code().value(), cmd.program, "pipe");
    }

    detail::spawn_setup setup;
    detail::check(posix_spawn_file_actions_adddup2(
                      &setup.actions, null_input >= 0 ? null_input : input.read.get(), 0),
                  cmd, "dup2 stdin");
    detail::check(posix_spawn_file_actions_adddup2(&setup.actions, output.write.get(), 1), cmd,
                  "dup2 stdout");
    detail::check(posix_spawn_file_actions_adddup2(&setup.actions, error.write.get(), 2), cmd,
                  "dup2 stderr");
    if (!cmd.working_directory.empty()) {
        detail::check(
            posix_spawn_file_actions_addchdir_np(&setup.actions, cmd.working_directory.c_str()),
            cmd, "chdir");
    }
    // Extra descriptors go to 3, 4, ...: first moved above those numbers, so that placing one
    // never overwrites another that is still to be placed.
    const int first_free = 3 + static_cast<int>(extra_fds.size());
    std::vector<unique_fd> lifted;
    for (std::size_t i = 0; i < extra_fds.size(); ++i) {
        const int moved = ::fcntl(extra_fds[i], F_DUPFD_CLOEXEC, first_free);
        if (moved < 0) {
            throw spawn_error(errno, cmd.program, "extra descriptor");
        }
        lifted.emplace_back(moved);
        detail::check(
            posix_spawn_file_actions_adddup2(&setup.actions, moved, 3 + static_cast<int>(i)), cmd,
            "dup2 extra descriptor");
    }
    // Every descriptor above those, including ones other threads opened without O_CLOEXEC.
    detail::check(posix_spawn_file_actions_addclosefrom_np(&setup.actions, first_free), cmd,
                  "closefrom");

    sigset_t no_signals;
    sigemptyset(&no_signals);
    sigset_t all_signals;
    sigfillset(&all_signals);
    sigdelset(&all_signals, SIGKILL);
    sigdelset(&all_signals, SIGSTOP);
#if defined(__GLIBC__) && defined(__linux__)
    // glibc reserves signals 32 and 33 (thread cancellation, setxid) and sets them to SIG_IGN in
    // every child it spawns; sigaddset() refuses them, so they would stay ignored in the program
    // and everything it runs. Their bits (signal n is bit n - 1 of the first word) are set
    // directly, so that they too are reset to default before exec.
    all_signals.__val[0] |= (1UL << 31U) | (1UL << 32U);
#endif
    detail::check(posix_spawnattr_setflags(&setup.attributes, POSIX_SPAWN_SETPGROUP |
                                                                  POSIX_SPAWN_SETSIGMASK |
                                                                  POSIX_SPAWN_SETSIGDEF),
                  cmd, "spawn flags");
    detail::check(posix_spawnattr_setpgroup(&setup.attributes, 0), cmd, "process group");
    detail::check(posix_spawnattr_setsigmask(&setup.attributes, &no_signals), cmd, "signal mask");
    detail::check(posix_spawnattr_setsigdefault(&setup.attributes, &all_signals), cmd,
                  "signal dispositions");

    child_process child;
    child.started = std::chrono::steady_clock::now();
    const bool search_path = cmd.program.find('/') == std::string::npos;
    const int spawned = search_path ? posix_spawnp(&child.pid, cmd.program.c_str(), &setup.actions,
                                                   &setup.attributes, argv.data(), envp.data())
                                    : posix_spawn(&child.pid, cmd.program.c_str(), &setup.actions,
                                                  &setup.attributes, argv.data(), envp.data());
    child.spawn_time = std::chrono::steady_clock::now() - child.started;
    if (spawned != 0) {
        throw spawn_error(spawned, cmd.program);
    }

    // Through syscall(): glibc 2.36's <sys/pidfd.h> declares pidfd_open without C linkage.
    const auto pidfd = static_cast<int>(::syscall(SYS_pidfd_open, child.pid, 0U));
    if (pidfd < 0) {
        const int saved = errno;
        ::kill(-child.pid, SIGKILL);
        ::waitpid(child.pid, nullptr, 0);
        throw spawn_error(saved, cmd.program, "pidfd_open");
    }
    child.pidfd.reset(pidfd);

    if (!cmd.standard_input.empty()) {
        child.standard_input = std::move(input.write);
        set_nonblocking(child.standard_input.get());
    }
    // The output ends stay blocking: the event loop reads them once per readiness event, which
    // never blocks, and saves two fcntl() calls per spawn.
    child.standard_output = std::move(output.read);
    child.standard_error = std::move(error.read);
    return child;
}

} // namespace btq::process
