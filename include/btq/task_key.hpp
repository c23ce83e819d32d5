/// @file task_key.hpp
/// @brief task_key: whose a task is (submit_options::key), for per-key fairness and limits.
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace btq {

/// @brief A caller-chosen key (a client id, a tenant, a user): a string or an integer. Waiting
///        tasks of different keys take turns; the empty key (the default) is no key.
///        A string key and an integer key are never equal, even for "7" and 7.
///
/// A key is a small value that holds no pointer (trivially copyable, 64 bytes): a string of up
/// to 47 bytes is kept whole; a longer one is kept as its first 39 bytes and a 64-bit hash of
/// the whole text (two long keys with the same start and the same hash would count as one key:
/// a chance of 2^-64). Being trivially copyable, a submit_options with a key survives GCC 12,
/// which copies some temporaries of a co_await expression byte by byte.
/// @code
/// queue.submit(task, {.key = "client-7"});
/// queue.submit(task, {.key = 42});
/// @endcode
class task_key {
  public:
    /// @brief No key.
    task_key() = default;
    /// @brief A string key (empty text: no key).
    task_key(const char* text) : task_key(std::string_view(text)) {}
    /// @brief A string key (empty text: no key).
    task_key(const std::string& text) : task_key(std::string_view(text)) {}
    /// @brief A string key (empty text: no key).
    task_key(std::string_view text) {
        if (text.empty()) {
            return;
        }
        kind_ = kind::text;
        if (text.size() <= whole_size) {
            length_ = static_cast<std::uint8_t>(text.size());
        } else {
            length_ = prefix_size;
            long_ = true;
            number_ = static_cast<std::int64_t>(fnv1a(text));
        }
        text.copy(text_.data(), length_);
    }
    /// @brief An integer key.
    template <std::integral Integer>
        requires(!std::same_as<Integer, bool> && !std::same_as<Integer, char>)
    task_key(Integer number) : number_(static_cast<std::int64_t>(number)), kind_(kind::number) {}

    /// @brief True for no key.
    [[nodiscard]] bool empty() const noexcept { return kind_ == kind::none; }
    /// @brief True for an integer key.
    [[nodiscard]] bool is_number() const noexcept { return kind_ == kind::number; }
    /// @brief The text of a string key (of a long one: its first 39 bytes, "...#" and its hash in
    ///        hex), the decimal digits of an integer key, "" for none.
    [[nodiscard]] std::string to_string() const {
        if (kind_ == kind::number) {
            return std::to_string(number_);
        }
        std::string out(text());
        if (long_) {
            constexpr std::string_view digits = "0123456789abcdef";
            out.append("...#");
            const auto hash = static_cast<std::uint64_t>(number_);
            for (int shift = 60; shift >= 0; shift -= 4) {
                out.push_back(digits[(hash >> shift) & 0xF]);
            }
        }
        return out;
    }

    /// @brief Same kind and same value.
    friend bool operator==(const task_key& a, const task_key& b) noexcept {
        return a.kind_ == b.kind_ && a.long_ == b.long_ && a.number_ == b.number_ &&
               a.text() == b.text();
    }

    /// @brief A hash for unordered containers.
    [[nodiscard]] std::size_t hash() const noexcept {
        return kind_ == kind::number
                   ? std::hash<std::int64_t>{}(number_)*31 + 1
                   : std::hash<std::string_view>{}(text()) ^ static_cast<std::size_t>(number_);
    }

  private:
    static constexpr std::size_t whole_size = 47;
    static constexpr std::size_t prefix_size = 39;

    static std::uint64_t fnv1a(std::string_view text) noexcept {
        std::uint64_t hash = 14695981039346656037ULL;
        for (const char c : text) {
            hash = (hash ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
        }
        return hash;
    }
    [[nodiscard]] std::string_view text() const noexcept {
        return std::string_view(text_.data(), length_);
    }

    enum class kind : std::uint8_t { none, text, number };
    std::array<char, whole_size> text_{};
    std::uint8_t length_ = 0;
    bool long_ = false;
    std::int64_t number_ = 0; ///< an integer key, or a long string key's hash
    kind kind_ = kind::none;
};

static_assert(std::is_trivially_copyable_v<task_key>);

/// @brief What a queue knows of one key now (bounded_task_queue::busiest_keys()).
struct key_stats {
    task_key key;               ///< the key
    std::size_t waiting = 0;    ///< its tasks waiting now
    std::size_t running = 0;    ///< its tasks running now
    std::uint64_t rejected = 0; ///< its tasks refused by capacity_per_key since it last had none
                                ///< waiting or running
};

} // namespace btq

/// @brief std::hash for btq::task_key.
template <>
struct std::hash<btq::task_key> {
    /// @brief The key's hash.
    std::size_t operator()(const btq::task_key& key) const noexcept { return key.hash(); }
};
