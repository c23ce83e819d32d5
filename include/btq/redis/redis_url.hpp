/// @file redis/redis_url.hpp
/// @brief The address of a cluster-wide permit pool: `redis://host:port/keyprefix`, parsed and
///        checked. No dependency beyond the standard library (the parser is usable without
///        hiredis).
#pragma once

#include <charconv>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

namespace btq {

/// @brief Where a pool of permits lives: one Redis server and the prefix of the pool's keys.
struct redis_endpoint {
    std::string host = "127.0.0.1"; ///< a host name or an IPv4 address (no IPv6 literal)
    std::uint16_t port = 6379;      ///< the TCP port
    /// The pool's name: every key and the wake-up channel start with it, so pools of different
    /// prefixes on one server are independent. Never empty.
    std::string key_prefix = "btq";
};

/// @brief A `redis://` URL that parse_redis_url() refuses; what() says what is wrong with it.
class redis_url_error : public std::invalid_argument {
  public:
    /// @brief An error whose what() is "btq: bad Redis URL: " + `message`.
    explicit redis_url_error(const std::string& message)
        : std::invalid_argument("btq: bad Redis URL: " + message) {}
};

/// @brief Parses `redis://host[:port][/keyprefix]`: the port defaults to 6379 and the prefix to
///        "btq". A user name, a password, a query, a database number alone (Redis database
///        numbers are not supported: use a prefix) and IPv6 literals are refused with a
///        redis_url_error that names the problem.
/// @code
/// const btq::redis_endpoint where = btq::parse_redis_url("redis://127.0.0.1:6379/btq-imports");
/// // where.host == "127.0.0.1", where.port == 6379, where.key_prefix == "btq-imports"
/// @endcode
[[nodiscard]] inline redis_endpoint parse_redis_url(std::string_view url) {
    constexpr std::string_view scheme = "redis://";
    if (!url.starts_with(scheme)) {
        throw redis_url_error("'" + std::string(url) + "' does not start with redis://");
    }
    std::string_view rest = url.substr(scheme.size());
    const std::size_t slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    std::string_view path =
        slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);

    if (authority.find('@') != std::string_view::npos) {
        throw redis_url_error("'" + std::string(url) +
                              "': user names and passwords are not supported");
    }
    if (authority.starts_with('[')) {
        throw redis_url_error("'" + std::string(url) + "': IPv6 literals are not supported");
    }
    redis_endpoint out;
    const std::size_t colon = authority.find(':');
    const std::string_view host = authority.substr(0, colon);
    if (host.empty()) {
        throw redis_url_error("'" + std::string(url) + "' has no host");
    }
    for (const char c : host) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
        if (!ok) {
            throw redis_url_error("'" + std::string(url) + "': the host '" + std::string(host) +
                                  "' has a character a host name cannot have");
        }
    }
    out.host = std::string(host);
    if (colon != std::string_view::npos) {
        const std::string_view digits = authority.substr(colon + 1);
        unsigned value = 0;
        const auto [end, error] =
            std::from_chars(digits.data(), digits.data() + digits.size(), value);
        if (digits.empty() || error != std::errc{} || end != digits.data() + digits.size() ||
            value == 0 || value > 65535) {
            throw redis_url_error("'" + std::string(url) + "': the port '" + std::string(digits) +
                                  "' is not a number from 1 to 65535");
        }
        out.port = static_cast<std::uint16_t>(value);
    }
    if (path.find_first_of("?#") != std::string_view::npos) {
        throw redis_url_error("'" + std::string(url) +
                              "': queries and fragments are not supported");
    }
    if (!path.empty()) {
        if (path.find_first_not_of("0123456789") == std::string_view::npos) {
            throw redis_url_error("'" + std::string(url) +
                                  "': a database number is not supported; the path is the key "
                                  "prefix and must not be only digits");
        }
        for (const char c : path) {
            if (c <= ' ' || c == 0x7f || c == '{' || c == '}') {
                throw redis_url_error("'" + std::string(url) +
                                      "': the key prefix may not hold spaces, control characters "
                                      "or braces");
            }
        }
        out.key_prefix = std::string(path);
    }
    return out;
}

/// @brief The URL of `where` (the inverse of parse_redis_url()).
[[nodiscard]] inline std::string to_url(const redis_endpoint& where) {
    return "redis://" + where.host + ":" + std::to_string(where.port) + "/" + where.key_prefix;
}

} // namespace btq
