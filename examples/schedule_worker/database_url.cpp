#include "database_url.hpp"

#include <cctype>
#include <optional>

namespace schedule {

namespace {

int hex_digit(char digit) noexcept {
    if (digit >= '0' && digit <= '9') {
        return digit - '0';
    }
    if (digit >= 'a' && digit <= 'f') {
        return digit - 'a' + 10;
    }
    if (digit >= 'A' && digit <= 'F') {
        return digit - 'A' + 10;
    }
    return -1;
}

/// `%XX` decoded, as libpq decodes each part of a URL.
std::string percent_decoded(std::string_view text, std::string_view part) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t index = 0; index < text.size(); ++index) {
        if (text[index] != '%') {
            out.push_back(text[index]);
            continue;
        }
        const int high = index + 2 < text.size() ? hex_digit(text[index + 1]) : -1;
        const int low = high >= 0 ? hex_digit(text[index + 2]) : -1;
        if (low < 0) {
            throw database_url_error("--database: a bad %-escape in the PostgreSQL URL's " +
                                     std::string(part));
        }
        out.push_back(static_cast<char>(high * 16 + low));
        index += 2;
    }
    return out;
}

/// host[:port] or [ipv6][:port]; a list of hosts (h1:p1,h2:p2) is kept whole as the host.
void split_host_port(std::string_view text, database_location& location) {
    if (text.find(',') != std::string_view::npos) {
        location.host = percent_decoded(text, "host");
        return;
    }
    std::string_view host = text;
    std::optional<std::string_view> port;
    if (host.starts_with('[')) {
        const std::size_t close = host.find(']');
        if (close == std::string_view::npos) {
            throw database_url_error("--database: an IPv6 host without its closing ']'");
        }
        if (close + 1 < host.size()) {
            if (host[close + 1] != ':') {
                throw database_url_error("--database: unexpected text after the IPv6 host");
            }
            port = host.substr(close + 2);
        }
        host = host.substr(1, close - 1);
    } else if (const std::size_t colon = host.rfind(':'); colon != std::string_view::npos) {
        port = host.substr(colon + 1);
        host = host.substr(0, colon);
    }
    location.host = percent_decoded(host, "host");
    if (port) {
        for (const char digit : *port) {
            if (std::isdigit(static_cast<unsigned char>(digit)) == 0) {
                throw database_url_error("--database: the PostgreSQL port must be a number");
            }
        }
        location.port = *port;
    }
}

void parse_postgresql(std::string_view rest, database_location& location) {
    std::string_view query;
    if (const std::size_t mark = rest.find('?'); mark != std::string_view::npos) {
        query = rest.substr(mark + 1);
        rest = rest.substr(0, mark);
    }
    std::string_view authority = rest;
    if (const std::size_t slash = rest.find('/'); slash != std::string_view::npos) {
        authority = rest.substr(0, slash);
        location.database = percent_decoded(rest.substr(slash + 1), "database name");
    }
    if (const std::size_t at = authority.rfind('@'); at != std::string_view::npos) {
        authority = authority.substr(at + 1); // user and password are not kept
    }
    split_host_port(authority, location);
    // Parameters override what the URL's parts say, as in libpq.
    while (!query.empty()) {
        const std::size_t amp = query.find('&');
        const std::string_view pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
        const std::size_t equals = pair.find('=');
        if (equals == std::string_view::npos) {
            throw database_url_error("--database: a PostgreSQL URL parameter without '='");
        }
        const std::string_view key = pair.substr(0, equals);
        const std::string_view value = pair.substr(equals + 1);
        if (key == "host") {
            location.host = percent_decoded(value, "host parameter");
        } else if (key == "port") {
            location.port = percent_decoded(value, "port parameter");
        } else if (key == "dbname") {
            location.database = percent_decoded(value, "dbname parameter");
        }
    }
}

} // namespace

database_location parse_database_url(std::string_view url) {
    database_location location;
    location.url = url;
    if (url.starts_with("sqlite:")) {
        location.store = database_location::kind::sqlite;
        location.sqlite_file = url.substr(7);
        if (location.sqlite_file.empty()) {
            throw database_url_error("--database: sqlite: needs a file (sqlite:DIR/schedules.db)");
        }
        return location;
    }
    for (const std::string_view scheme : {"postgresql://", "postgres://"}) {
        if (url.starts_with(scheme)) {
            location.store = database_location::kind::postgresql;
            parse_postgresql(url.substr(scheme.size()), location);
            return location;
        }
    }
    const std::size_t colon = url.find(':');
    const std::string scheme(colon == std::string_view::npos ? std::string_view()
                                                             : url.substr(0, colon));
    throw database_url_error(
        "--database: " +
        (scheme.empty() ? std::string("not a database URL") : "unknown scheme '" + scheme + ":'") +
        ": expected sqlite:FILE or "
        "postgresql://[user[:password]@]host[:port]/dbname");
}

std::string describe(const database_location& location) {
    if (location.store == database_location::kind::sqlite) {
        return "sqlite:" + location.sqlite_file;
    }
    std::string out = "postgresql://";
    const bool ipv6 = location.host.find(':') != std::string::npos &&
                      location.host.find(',') == std::string::npos;
    out += ipv6 ? "[" + location.host + "]" : location.host;
    if (!location.port.empty()) {
        out += ":" + location.port;
    }
    out += "/" + location.database;
    return out;
}

std::string_view kind_name(database_location::kind store) noexcept {
    return store == database_location::kind::sqlite ? "sqlite" : "postgresql";
}

} // namespace schedule
