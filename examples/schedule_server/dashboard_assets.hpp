/// @file dashboard_assets.hpp
/// @brief The files of the dashboard (examples/schedule_server/dashboard: its HTML, CSS and
///        JavaScript), embedded in the server at build time by embed_files.cmake, which writes
///        the definition of dashboard_assets() into the build folder. Free of Beast.
#pragma once

#include <span>
#include <string_view>

namespace schedule_server {

/// One embedded file.
struct dashboard_asset {
    std::string_view name;         ///< its file name, e.g. "dashboard.js"
    std::string_view content_type; ///< by its extension, e.g. "text/javascript; charset=utf-8"
    std::string_view etag;         ///< a strong entity tag (quoted): the start of its SHA-256
    std::string_view body;         ///< its bytes
};

/// Every file of the dashboard folder, sorted by name.
[[nodiscard]] std::span<const dashboard_asset> dashboard_assets() noexcept;

} // namespace schedule_server
