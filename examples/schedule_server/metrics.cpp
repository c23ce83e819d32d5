#include "metrics.hpp"

#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace schedule_server {

void append_number(std::string& out, double value) {
    if (!std::isfinite(value)) {
        out += '0';
        return;
    }
    std::array<char, 32> buffer{};
    const auto [end, error] = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
    out.append(buffer.data(), error == std::errc{} ? end : buffer.data());
}

void append_number(std::string& out, std::uint64_t value) {
    std::array<char, 24> buffer{};
    const auto [end, error] = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
    out.append(buffer.data(), error == std::errc{} ? end : buffer.data());
}

void latency_histogram::record(std::chrono::nanoseconds elapsed) noexcept {
    const double seconds = std::chrono::duration<double>(elapsed).count();
    std::size_t bucket = 0;
    while (bucket < bounds.size() && seconds > bounds[bucket]) {
        ++bucket;
    }
    buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
    sum_nanoseconds_.fetch_add(
        static_cast<std::uint64_t>(elapsed.count() > 0 ? elapsed.count() : 0),
        std::memory_order_relaxed);
}

void latency_histogram::write(std::string& out, const std::string& name,
                              const std::string& help) const {
    out += "# HELP " + name + ' ' + help + "\n# TYPE " + name + " histogram\n";
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i <= bounds.size(); ++i) {
        cumulative += buckets_[i].load(std::memory_order_relaxed);
        out += name + "_bucket{le=\"";
        if (i < bounds.size()) {
            append_number(out, bounds[i]);
        } else {
            out += "+Inf";
        }
        out += "\"} ";
        append_number(out, cumulative);
        out += '\n';
    }
    out += name + "_sum ";
    append_number(out, static_cast<double>(sum_nanoseconds_.load(std::memory_order_relaxed)) / 1e9);
    out += '\n' + name + "_count ";
    append_number(out, cumulative); // equal to the +Inf bucket, as Prometheus expects
    out += '\n';
}

} // namespace schedule_server
