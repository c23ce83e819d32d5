/// @file spawn.hpp
/// @brief Starts a btq::command: pipes on 0, 1 and 2, every other descriptor closed, its own
///        process group, default signal mask and dispositions, and a pidfd. With posix_spawn;
///        or, for a command whose child must be changed before its program runs (a memory
///        limit, an oom_score_adj), with a clone() of the same kind that can do that.
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cgroup.hpp"
#include "command.hpp"
#include "memory_limit.hpp"
#include "unique_fd.hpp"

/// The parent's environment (POSIX declares it in no header), what a command without an
/// environment of its own passes on.
extern char** environ; // NOLINT(readability-redundant-declaration)

namespace btq::process {

/// A started child: its pid (also its process group id), a pidfd, and the parent's ends of its
/// standard streams (input non-blocking; output blocking, to be read once per readiness event).
struct child_process {
    pid_t pid = 0;             ///< its pid, also its process group id
    unique_fd pidfd;           ///< a pidfd of it: readable once it has ended
    unique_fd standard_input;  ///< write end; invalid when there was nothing to write
    unique_fd standard_output; ///< read end
    unique_fd standard_error;  ///< read end
    std::chrono::steady_clock::time_point started{}; ///< just before posix_spawn
    std::chrono::nanoseconds spawn_time{0};          ///< inside the spawn call
    /// The memory cgroup it runs in (a command with a memory_limit, where cgroups can be made).
    std::unique_ptr<memory_cgroup> cgroup;
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

/// The steps of the clone() path's child, named in its spawn_error.
enum class child_step : int {
    none,
    cgroup,
    setpgid,
    rlimit,
    oom_score_adj,
    dup2,
    chdir,
    closefrom,
    exec
};

inline const char* name_of(child_step step) noexcept {
    switch (step) {
    case child_step::none:
    case child_step::exec:
        return "";
    case child_step::setpgid:
        return "process group";
    case child_step::cgroup:
        return "memory cgroup";
    case child_step::rlimit:
        return "memory limit (RLIMIT_DATA)";
    case child_step::oom_score_adj:
        return "oom_score_adj";
    case child_step::dup2:
        return "dup2";
    case child_step::chdir:
        return "chdir";
    case child_step::closefrom:
        return "closefrom";
    }
    return "";
}

/// The kernel's struct sigaction, for rt_sigaction(2) called directly.
struct kernel_sigaction {
    void* handler = nullptr; // SIG_DFL
    unsigned long flags = 0;
    void* restorer = nullptr;
    std::uint64_t mask = 0;
};

/// Everything the clone() path's child does, prepared by the parent: the child, which shares the
/// parent's memory while the parent waits (CLONE_VM | CLONE_VFORK), only reads it and makes
/// system calls, and writes `error` and `step` if one fails.
struct clone_plan {
    // Plain arrays and pointers: the child calls no library code, not even an inline accessor.
    int standard[3]{};          // NOLINT(*-avoid-c-arrays): become descriptors 0, 1, 2
    const int* extra = nullptr; // become 3, 4, ...
    std::size_t extra_count = 0;
    int first_free = 3; // closed from here up
    const char* working_directory = nullptr;
    int cgroup = -1; // its cgroup.procs, written "0" to join: before anything it allocates
    bool limit_data = false;
    rlimit data_limit{};
    const char* oom_text = nullptr; // written to /proc/self/oom_score_adj
    std::size_t oom_length = 0;
    char* const* argv = nullptr;
    char* const* envp = nullptr;
    const char* const* programs = nullptr; // paths to try in order (the PATH search)
    std::size_t program_count = 0;
    kernel_sigaction default_action{};
    std::uint64_t no_signals = 0;
    int error = 0; // set by the child
    child_step step = child_step::none;
};

/// Marks the code of the cloned child. The child runs on its own small stack, in the parent's
/// memory, while the parent's thread waits: no sanitizer instrumentation, no library call but
/// syscall(), nothing that allocates or locks.
#define BTQ_CHILD_CODE __attribute__((no_sanitize("address", "thread", "undefined")))

[[noreturn]] BTQ_CHILD_CODE inline void child_failed(clone_plan& plan, child_step step) noexcept {
    plan.error = errno;
    plan.step = step;
    ::syscall(SYS_exit_group, 127);
    __builtin_unreachable();
}

BTQ_CHILD_CODE inline bool child_dup(int from, int to) noexcept {
    if (from == to) { // keep it, without its close-on-exec flag
        return ::syscall(SYS_fcntl, from, F_SETFD, 0) == 0;
    }
    return ::syscall(SYS_dup3, from, to, 0) == to;
}

BTQ_CHILD_CODE inline int child_main(void* argument) noexcept {
    clone_plan& plan = *static_cast<clone_plan*>(argument);
    // Every signal is blocked (the parent blocked them before clone()); the handlers are the
    // parent's, which must never run here: back to default, then the program gets no mask.
    for (int signal_number = 1; signal_number < 65; ++signal_number) {
        if (signal_number != SIGKILL && signal_number != SIGSTOP) {
            ::syscall(SYS_rt_sigaction, signal_number, &plan.default_action, nullptr,
                      sizeof(plan.no_signals));
        }
    }
    if (plan.cgroup >= 0 && ::syscall(SYS_write, plan.cgroup, "0", 1) != 1) {
        child_failed(plan, child_step::cgroup);
    }
    if (::syscall(SYS_setpgid, 0, 0) != 0) {
        child_failed(plan, child_step::setpgid);
    }
    if (plan.limit_data &&
        ::syscall(SYS_prlimit64, 0, RLIMIT_DATA, &plan.data_limit, nullptr) != 0) {
        child_failed(plan, child_step::rlimit);
    }
    if (plan.oom_text != nullptr) {
        const auto fd = static_cast<int>(
            ::syscall(SYS_openat, AT_FDCWD, "/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC));
        if (fd < 0) {
            child_failed(plan, child_step::oom_score_adj);
        }
        if (::syscall(SYS_write, fd, plan.oom_text, plan.oom_length) !=
            static_cast<long>(plan.oom_length)) {
            child_failed(plan, child_step::oom_score_adj);
        }
        ::syscall(SYS_close, fd);
    }
    for (int target = 0; target < 3; ++target) {
        if (!child_dup(plan.standard[target], target)) {
            child_failed(plan, child_step::dup2);
        }
    }
    for (std::size_t i = 0; i < plan.extra_count; ++i) {
        if (!child_dup(plan.extra[i], 3 + static_cast<int>(i))) {
            child_failed(plan, child_step::dup2);
        }
    }
    if (plan.working_directory != nullptr && ::syscall(SYS_chdir, plan.working_directory) != 0) {
        child_failed(plan, child_step::chdir);
    }
    if (::syscall(SYS_close_range, plan.first_free, ~0U, 0) != 0) {
        child_failed(plan, child_step::closefrom);
    }
    ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &plan.no_signals, nullptr, sizeof(plan.no_signals));
    // execvp()'s rule: a candidate that is missing is skipped; one that is there but refused
    // (EACCES) is skipped too, and reported if nothing else runs.
    int reported = ENOENT;
    for (std::size_t i = 0; i < plan.program_count; ++i) {
        ::syscall(SYS_execve, plan.programs[i], plan.argv, plan.envp);
        const int failed = errno;
        if (failed == EACCES) {
            reported = EACCES;
        } else if (failed != ENOENT && failed != ENOTDIR) {
            reported = failed;
            break;
        }
    }
    errno = reported;
    child_failed(plan, child_step::exec);
}

#undef BTQ_CHILD_CODE

/// The paths execvp() would try for `program`: itself when it has a '/', else each directory of
/// the parent's PATH in turn.
inline std::vector<std::string> program_candidates(const std::string& program) {
    if (program.find('/') != std::string::npos) {
        return {program};
    }
    const char* path = std::getenv("PATH"); // NOLINT(concurrency-mt-unsafe): as posix_spawnp
    const std::string_view directories = path != nullptr ? path : "/bin:/usr/bin";
    std::vector<std::string> candidates;
    std::size_t from = 0;
    for (;;) {
        const std::size_t colon = directories.find(':', from);
        const std::string_view directory =
            directories.substr(from, colon == std::string_view::npos ? colon : colon - from);
        std::string candidate(directory.empty() ? "." : directory);
        candidate.append(1, '/').append(program);
        candidates.push_back(std::move(candidate));
        if (colon == std::string_view::npos) {
            return candidates;
        }
        from = colon + 1;
    }
}

#if defined(__GLIBC__)
/// glibc's clone() under its other name. A sanitizer that intercepts clone() (ThreadSanitizer)
/// treats the child as a fork with memory of its own, and resets its runtime there: in a child
/// that shares the parent's memory, that would be the parent's runtime. The child runs no
/// instrumented code, so it needs no sanitizer at all.
// NOLINTNEXTLINE(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp)
extern "C" int __clone(int (*function)(void*), void* stack, int flags, void* argument, ...);
inline int start_clone(int (*function)(void*), void* stack, int flags, void* argument) noexcept {
    return __clone(function, stack, flags, argument);
}
#else
inline int start_clone(int (*function)(void*), void* stack, int flags, void* argument) noexcept {
    return ::clone(function, stack, flags, argument);
}
#endif

/// The clone() child's stack, one per spawning thread, mapped at its first spawn and kept until
/// the thread exits: a spawn holds its thread until the child has exec'd, so a thread never
/// needs two. (Unmapping it after every spawn would cost a TLB shootdown on every other CPU
/// that runs one of this process's threads.)
class child_stack {
  public:
    static constexpr std::size_t size = std::size_t{64} << 10;
    child_stack() = default;
    child_stack(const child_stack&) = delete;
    child_stack& operator=(const child_stack&) = delete;
    ~child_stack() {
        if (base_ != nullptr) {
            ::munmap(base_, size);
        }
    }
    /// The top of the stack (it grows down); nullptr, with errno set, if it cannot be mapped.
    void* top() noexcept {
        if (base_ == nullptr) {
            void* mapped = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
            if (mapped == MAP_FAILED) {
                return nullptr;
            }
            base_ = mapped;
        }
        return static_cast<char*>(base_) + size;
    }

  private:
    void* base_ = nullptr;
};

/// Starts the child with clone(CLONE_VM | CLONE_VFORK), as glibc's posix_spawn does, running
/// child_main: the parent's thread waits until the program runs (or the child fails).
inline pid_t clone_spawn(clone_plan& plan, const command& cmd) {
    thread_local child_stack stack;
    void* const stack_top = stack.top();
    if (stack_top == nullptr) {
        throw spawn_error(errno, cmd.program, "child stack");
    }
    // All signals blocked on this thread across clone(), so none reaches the child before it has
    // reset the handlers it shares with the parent; glibc's own reserved ones included.
    std::uint64_t all_signals = ~std::uint64_t{0};
    std::uint64_t previous = 0;
    ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all_signals, &previous, sizeof(previous));
    const pid_t pid = start_clone(&child_main, stack_top, CLONE_VM | CLONE_VFORK | SIGCHLD, &plan);
    const int saved = errno;
    ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &previous, nullptr, sizeof(previous));
    if (pid < 0) {
        throw spawn_error(saved, cmd.program, "clone");
    }
    if (plan.error != 0) {
        ::waitpid(pid, nullptr, 0); // it has exited
        throw spawn_error(plan.error, cmd.program, name_of(plan.step));
    }
    return pid;
}

/// Whether `cmd` needs the clone() path: something must be changed in the child before its
/// program runs that posix_spawn cannot do.
[[nodiscard]] inline bool needs_clone_path(const command& cmd) noexcept {
    return cmd.memory_limit.has_value() || cmd.oom_score_adj.has_value();
}

} // namespace detail

/// Starts `cmd`. Throws btq::spawn_error (with the errno) if it cannot be started: program not
/// found or not executable, working directory missing, out of processes or descriptors, an
/// oom_score_adj below the parent's without the privilege to lower it.
/// `extra_fds[i]` becomes descriptor 3 + i in the child (the worker protocol's channels);
/// every other descriptor above 2 is closed.
///
/// A command with a memory_limit or an oom_score_adj is started by clone_spawn(), whose child
/// sets them before exec (posix_spawn has no attribute for either); the others by posix_spawn.
inline child_process spawn(const command& cmd, std::span<const int> extra_fds = {}) {
    if (cmd.program.empty()) {
        throw spawn_error(EINVAL, cmd.program, "empty program name");
    }
    std::vector<std::string> argument_strings;
    argument_strings.reserve(cmd.arguments.size() + 1);
    argument_strings.push_back(cmd.program);
    argument_strings.insert(argument_strings.end(), cmd.arguments.begin(), cmd.arguments.end());
    std::vector<char*> argv = detail::pointers_to(argument_strings);
    // The parent's environment as it is needs no copy (most commands): the child gets `environ`.
    const bool unchanged_environment = cmd.environment_source == environment_mode::inherit &&
                                       cmd.environment.empty() && cmd.unset_environment.empty();
    std::vector<std::string> environment_strings;
    std::vector<char*> environment_pointers;
    if (!unchanged_environment) {
        environment_strings = detail::environment_of(cmd);
        environment_pointers = detail::pointers_to(environment_strings);
    }
    char* const* const envp = unchanged_environment ? environ : environment_pointers.data();

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
    const int child_input = null_input >= 0 ? null_input : input.read.get();

    // Extra descriptors go to 3, 4, ...: first moved above those numbers, so that placing one
    // never overwrites another that is still to be placed.
    const int first_free = 3 + static_cast<int>(extra_fds.size());
    std::vector<unique_fd> lifted;
    std::vector<int> lifted_numbers;
    for (const int extra : extra_fds) {
        const int moved = ::fcntl(extra, F_DUPFD_CLOEXEC, first_free);
        if (moved < 0) {
            throw spawn_error(errno, cmd.program, "extra descriptor");
        }
        lifted.emplace_back(moved);
        lifted_numbers.push_back(moved);
    }

    child_process child;
    if (detail::needs_clone_path(cmd)) {
        detail::clone_plan plan;
        plan.standard[0] = child_input;
        plan.standard[1] = output.write.get();
        plan.standard[2] = error.write.get();
        plan.extra = lifted_numbers.data();
        plan.extra_count = lifted_numbers.size();
        plan.first_free = first_free;
        if (!cmd.working_directory.empty()) {
            plan.working_directory = cmd.working_directory.c_str();
        }
        if (cmd.memory_limit) {
            child.cgroup = memory_cgroup::make(*cmd.memory_limit);
        }
        if (child.cgroup) {
            plan.cgroup = child.cgroup->join_descriptor();
        } else if (cmd.memory_limit) {
            // Soft and hard alike, so the program cannot raise it; never above the hard limit
            // this process already has (raising that needs privilege).
            rlimit current{};
            ::getrlimit(RLIMIT_DATA, &current);
            const auto wanted = static_cast<rlim_t>(*cmd.memory_limit);
            const rlim_t allowed = current.rlim_max == RLIM_INFINITY
                                       ? wanted
                                       : std::min<rlim_t>(wanted, current.rlim_max);
            plan.limit_data = true;
            plan.data_limit = rlimit{allowed, allowed};
        }
        const std::string oom_text =
            cmd.oom_score_adj ? std::to_string(*cmd.oom_score_adj) : std::string();
        if (cmd.oom_score_adj) {
            plan.oom_text = oom_text.c_str();
            plan.oom_length = oom_text.size();
        }
        plan.argv = argv.data();
        plan.envp = envp;
        const std::vector<std::string> candidates = detail::program_candidates(cmd.program);
        std::vector<const char*> candidate_pointers;
        candidate_pointers.reserve(candidates.size());
        for (const std::string& candidate : candidates) {
            candidate_pointers.push_back(candidate.c_str());
        }
        plan.programs = candidate_pointers.data();
        plan.program_count = candidate_pointers.size();
        child.started = std::chrono::steady_clock::now();
        child.pid = detail::clone_spawn(plan, cmd);
        child.spawn_time = std::chrono::steady_clock::now() - child.started;
    } else {
        detail::spawn_setup setup;
        detail::check(posix_spawn_file_actions_adddup2(&setup.actions, child_input, 0), cmd,
                      "dup2 stdin");
        detail::check(posix_spawn_file_actions_adddup2(&setup.actions, output.write.get(), 1), cmd,
                      "dup2 stdout");
        detail::check(posix_spawn_file_actions_adddup2(&setup.actions, error.write.get(), 2), cmd,
                      "dup2 stderr");
        if (!cmd.working_directory.empty()) {
            detail::check(
                posix_spawn_file_actions_addchdir_np(&setup.actions, cmd.working_directory.c_str()),
                cmd, "chdir");
        }
        for (std::size_t i = 0; i < lifted_numbers.size(); ++i) {
            detail::check(posix_spawn_file_actions_adddup2(&setup.actions, lifted_numbers[i],
                                                           3 + static_cast<int>(i)),
                          cmd, "dup2 extra descriptor");
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
        // glibc reserves signals 32 and 33 (thread cancellation, setxid) and sets them to SIG_IGN
        // in every child it spawns; sigaddset() refuses them, so they would stay ignored in the
        // program and everything it runs. Their bits (signal n is bit n - 1 of the first word)
        // are set directly, so that they too are reset to default before exec.
        all_signals.__val[0] |= (1UL << 31U) | (1UL << 32U);
#endif
        detail::check(posix_spawnattr_setflags(&setup.attributes, POSIX_SPAWN_SETPGROUP |
                                                                      POSIX_SPAWN_SETSIGMASK |
                                                                      POSIX_SPAWN_SETSIGDEF),
                      cmd, "spawn flags");
        detail::check(posix_spawnattr_setpgroup(&setup.attributes, 0), cmd, "process group");
        detail::check(posix_spawnattr_setsigmask(&setup.attributes, &no_signals), cmd,
                      "signal mask");
        detail::check(posix_spawnattr_setsigdefault(&setup.attributes, &all_signals), cmd,
                      "signal dispositions");

        child.started = std::chrono::steady_clock::now();
        const bool search_path = cmd.program.find('/') == std::string::npos;
        const int spawned = search_path
                                ? posix_spawnp(&child.pid, cmd.program.c_str(), &setup.actions,
                                               &setup.attributes, argv.data(), envp)
                                : posix_spawn(&child.pid, cmd.program.c_str(), &setup.actions,
                                              &setup.attributes, argv.data(), envp);
        child.spawn_time = std::chrono::steady_clock::now() - child.started;
        if (spawned != 0) {
            throw spawn_error(spawned, cmd.program);
        }
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
