/// @file unique_fd.hpp
/// @brief unique_fd: owns a file descriptor and closes it once.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <system_error>
#include <utility>

namespace btq::process {

/// Owns a file descriptor; closes it on destruction. Move-only.
class unique_fd {
  public:
    /// @brief Holds no descriptor.
    unique_fd() noexcept = default;
    /// @brief Takes ownership of `fd` (-1: none).
    explicit unique_fd(int fd) noexcept : fd_(fd) {}
    /// @brief Takes `other`'s descriptor; `other` holds none.
    unique_fd(unique_fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    /// @brief Closes the descriptor held (if any) and takes `other`'s.
    unique_fd& operator=(unique_fd&& other) noexcept {
        if (this != &other) {
            reset(std::exchange(other.fd_, -1));
        }
        return *this;
    }
    unique_fd(const unique_fd&) = delete;
    unique_fd& operator=(const unique_fd&) = delete;
    ~unique_fd() { reset(); }

    /// @brief The descriptor, or -1.
    [[nodiscard]] int get() const noexcept { return fd_; }
    /// @brief True when a descriptor is held.
    [[nodiscard]] bool valid() const noexcept { return fd_ >= 0; }
    /// @brief valid().
    explicit operator bool() const noexcept { return valid(); }

    /// Closes the descriptor held (if any) and takes `fd`.
    void reset(int fd = -1) noexcept {
        if (fd_ >= 0) {
            ::close(fd_);
        }
        fd_ = fd;
    }

  private:
    int fd_ = -1;
};

/// Throws std::system_error for the current errno.
[[noreturn]] inline void throw_errno(const char* what) {
    throw std::system_error(errno, std::generic_category(), what);
}

/// Makes `fd` non-blocking.
inline void set_nonblocking(int fd) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        throw_errno("btq: fcntl(O_NONBLOCK)");
    }
}

/// A pipe whose ends are close-on-exec and numbered 3 or above (so that placing them on 0, 1
/// and 2 in a child never collides with a standard descriptor the parent had closed).
struct pipe_ends {
    unique_fd read;  ///< the read end
    unique_fd write; ///< the write end
};

/// Takes `fd`, moved to a close-on-exec descriptor numbered 3 or above when it is 0, 1 or 2
/// (the original is closed). Throws std::system_error when it cannot be moved.
inline unique_fd above_standard_fds(int fd) {
    if (fd > 2) {
        return unique_fd(fd);
    }
    const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
    const int saved = errno;
    ::close(fd);
    if (moved < 0) {
        errno = saved;
        throw_errno("btq: fcntl(F_DUPFD_CLOEXEC)");
    }
    return unique_fd(moved);
}

/// A new pipe, both ends close-on-exec and numbered 3 or above (see pipe_ends). Throws
/// std::system_error on failure.
inline pipe_ends make_pipe() {
    std::array<int, 2> fds{};
    if (::pipe2(fds.data(), O_CLOEXEC) != 0) {
        throw_errno("btq: pipe2");
    }
    unique_fd read_end = above_standard_fds(fds[0]);
    unique_fd write_end = above_standard_fds(fds[1]);
    return pipe_ends{std::move(read_end), std::move(write_end)};
}

} // namespace btq::process
