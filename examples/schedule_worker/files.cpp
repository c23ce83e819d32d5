#include "files.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>
#include <utility>

namespace schedule {

namespace {

[[noreturn]] void fail_errno(int error_number, const std::string& path) {
    using reason = file_error::reason;
    switch (error_number) {
    case ENOENT:
        throw file_error(reason::missing, path + " does not exist");
    case ELOOP:
        throw file_error(reason::symbolic_link,
                         path + " is a symbolic link (links are not followed)");
    case ENOTDIR:
        throw file_error(reason::not_regular, path + " is not a directory");
    default:
        // generic_category().message: strerror's text, without its thread-safety caveat.
        throw file_error(reason::other,
                         path + ": " + std::generic_category().message(error_number));
    }
}

/// After openat(..., O_DIRECTORY | O_NOFOLLOW) failed: Linux reports a symbolic link there as
/// ENOTDIR, not ELOOP; tell the two apart for the message.
[[noreturn]] void fail_directory_open(int error_number, int parent, const std::string& name,
                                      const std::string& shown) {
    struct stat status {};
    if (error_number == ENOTDIR &&
        ::fstatat(parent, name.c_str(), &status, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISLNK(status.st_mode)) {
        error_number = ELOOP;
    }
    fail_errno(error_number, shown);
}

std::string joined(const std::string& parent, std::string_view name) {
    std::string path = parent;
    if (!path.empty() && path.back() != '/') {
        path += '/';
    }
    path += name;
    return path;
}

/// Closes a descriptor at the end of a scope.
class descriptor_guard {
  public:
    explicit descriptor_guard(int descriptor) noexcept : descriptor_(descriptor) {}
    ~descriptor_guard() {
        if (descriptor_ >= 0) {
            ::close(descriptor_);
        }
    }
    descriptor_guard(const descriptor_guard&) = delete;
    descriptor_guard& operator=(const descriptor_guard&) = delete;
    descriptor_guard(descriptor_guard&&) = delete;
    descriptor_guard& operator=(descriptor_guard&&) = delete;
    [[nodiscard]] int get() const noexcept { return descriptor_; }
    void reset(int descriptor) noexcept {
        if (descriptor_ >= 0) {
            ::close(descriptor_);
        }
        descriptor_ = descriptor;
    }

  private:
    int descriptor_;
};

} // namespace

bool is_plain_file_name(std::string_view name) noexcept {
    if (name.empty() || name.size() > 255 || name.front() == '.' ||
        name.find('/') != std::string_view::npos || name.find("..") != std::string_view::npos) {
        return false;
    }
    return std::ranges::none_of(name, [](char letter) {
        const auto byte = static_cast<unsigned char>(letter);
        return byte < 0x20U || byte == 0x7FU;
    });
}

bool is_confined_path(std::string_view path) noexcept {
    if (path.empty() || path.front() == '/' || path.find('\0') != std::string_view::npos) {
        return false;
    }
    std::size_t position = 0;
    while (position <= path.size()) {
        std::size_t end = path.find('/', position);
        if (end == std::string_view::npos) {
            end = path.size();
        }
        if (path.substr(position, end - position) == "..") {
            return false;
        }
        position = end + 1;
    }
    return true;
}

directory::directory(const std::filesystem::path& path, std::string shown_as)
    : descriptor_(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)),
      path_(std::move(shown_as)) {
    if (descriptor_ < 0) {
        fail_errno(errno, path_.empty() ? "the data folder" : path_);
    }
}

directory::~directory() {
    if (descriptor_ >= 0) {
        ::close(descriptor_);
    }
}

directory::directory(directory&& other) noexcept
    : descriptor_(std::exchange(other.descriptor_, -1)), path_(std::move(other.path_)) {}

directory& directory::operator=(directory&& other) noexcept {
    if (this != &other) {
        if (descriptor_ >= 0) {
            ::close(descriptor_);
        }
        descriptor_ = std::exchange(other.descriptor_, -1);
        path_ = std::move(other.path_);
    }
    return *this;
}

directory directory::child(std::string_view name) const {
    const std::string child_name(name);
    const int descriptor =
        ::openat(descriptor_, child_name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (descriptor < 0) {
        fail_directory_open(errno, descriptor_, child_name, joined(path_, name));
    }
    return {descriptor, joined(path_, name)};
}

std::string directory::read_file(std::string_view relative_path, std::size_t max_bytes) const {
    const std::string shown = joined(path_, relative_path);
    if (!is_confined_path(relative_path)) {
        throw file_error(file_error::reason::other,
                         shown + " is not inside " + (path_.empty() ? "the data folder" : path_));
    }
    // Walk the directories one component at a time, never following a link.
    descriptor_guard current(-1);
    int parent = descriptor_;
    std::size_t position = 0;
    for (;;) {
        const std::size_t slash = relative_path.find('/', position);
        if (slash == std::string_view::npos) {
            break;
        }
        const std::string component(relative_path.substr(position, slash - position));
        position = slash + 1;
        if (component.empty() || component == ".") {
            continue;
        }
        const int next =
            ::openat(parent, component.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0) {
            fail_directory_open(errno, parent, component, shown);
        }
        current.reset(next);
        parent = next;
    }
    const std::string file_name(relative_path.substr(position));
    // O_NONBLOCK: opening a FIFO planted in the folder must not hang the worker.
    descriptor_guard file(
        ::openat(parent, file_name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
    if (file.get() < 0) {
        fail_errno(errno, shown);
    }
    struct stat status {};
    if (::fstat(file.get(), &status) != 0) {
        fail_errno(errno, shown);
    }
    if (!S_ISREG(status.st_mode)) {
        throw file_error(file_error::reason::not_regular, shown + " is not a regular file");
    }
    const auto too_large = [&] {
        return file_error(file_error::reason::too_large,
                          shown + " is larger than " + std::to_string(max_bytes) + " bytes");
    };
    if (static_cast<std::size_t>(status.st_size) > max_bytes) {
        throw too_large();
    }
    // Read up to one byte past the limit: the file may have grown since fstat.
    std::string contents(static_cast<std::size_t>(status.st_size) + 1, '\0');
    std::size_t used = 0;
    for (;;) {
        if (used == contents.size()) {
            if (contents.size() > max_bytes) {
                throw too_large();
            }
            contents.resize(std::min(contents.size() * 2, max_bytes + 1));
        }
        const ssize_t got = ::read(file.get(), contents.data() + used, contents.size() - used);
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            fail_errno(errno, shown);
        }
        if (got == 0) {
            break;
        }
        used += static_cast<std::size_t>(got);
    }
    if (used > max_bytes) {
        throw too_large();
    }
    contents.resize(used);
    return contents;
}

std::vector<std::string> directory::entries() const {
    // fdopendir takes the descriptor over: give it a duplicate.
    const int duplicate = ::fcntl(descriptor_, F_DUPFD_CLOEXEC, 0);
    if (duplicate < 0) {
        fail_errno(errno, path_);
    }
    DIR* listing = ::fdopendir(duplicate);
    if (listing == nullptr) {
        const int error_number = errno;
        ::close(duplicate);
        fail_errno(error_number, path_);
    }
    ::rewinddir(listing);
    std::vector<std::string> names;
    // readdir is safe here: this stream is private to this call.
    while (const dirent* entry = ::readdir(listing)) { // NOLINT(concurrency-mt-unsafe)
        const std::string_view name(&entry->d_name[0]);
        if (name != "." && name != "..") {
            names.emplace_back(name);
        }
    }
    ::closedir(listing);
    return names;
}

} // namespace schedule
