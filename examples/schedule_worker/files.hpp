/// @file files.hpp
/// @brief Reading files confined to the data folder: every name is resolved beneath an open
///        directory descriptor with O_NOFOLLOW, so neither `..` nor a symbolic link leads out.
#pragma once

#include <cstddef>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace schedule {

/// @brief Why a file could not be read.
struct file_error : std::runtime_error {
    enum class reason { missing, symbolic_link, not_regular, too_large, other };
    file_error(reason why_, const std::string& message) : std::runtime_error(message), why(why_) {}
    reason why;
};

/// @brief Whether `name` is acceptable as one file name inside a folder: not empty, at most
///        255 bytes, no `/`, no `..`, no leading `.`, no NUL or other control character.
[[nodiscard]] bool is_plain_file_name(std::string_view name) noexcept;

/// @brief Whether `path` is a relative path that stays inside its folder: not empty, not
///        absolute, no `..` component, no NUL.
[[nodiscard]] bool is_confined_path(std::string_view path) noexcept;

/// @brief An open directory (owns the descriptor).
class directory {
  public:
    /// @brief Opens `path` (which may itself be or go through a symbolic link: it is the
    ///        operator's choice, not the request's).
    /// @param shown_as how messages name the directory and the files beneath it (so that
    ///        answers need not reveal where the data folder is); empty: relative names only
    /// @throws file_error
    directory(const std::filesystem::path& path, std::string shown_as);
    ~directory();
    directory(directory&& other) noexcept;
    directory& operator=(directory&& other) noexcept;
    directory(const directory&) = delete;
    directory& operator=(const directory&) = delete;

    /// @brief The subdirectory `name` (one component; a symbolic link is refused).
    /// @throws file_error
    [[nodiscard]] directory child(std::string_view name) const;

    /// @brief The whole regular file at `relative_path` (components separated by `/`, each
    ///        opened with O_NOFOLLOW beneath this directory).
    /// @pre is_confined_path(relative_path)
    /// @throws file_error: missing, a symbolic link, not a regular file, over `max_bytes`
    [[nodiscard]] std::string read_file(std::string_view relative_path,
                                        std::size_t max_bytes) const;

    /// @brief The names of the entries, except `.` and `..`, unsorted.
    /// @throws file_error
    [[nodiscard]] std::vector<std::string> entries() const;

  private:
    directory(int descriptor, std::string path) noexcept
        : descriptor_(descriptor), path_(std::move(path)) {}

    int descriptor_ = -1;
    std::string path_; ///< for messages
};

} // namespace schedule
