/// @file task_key.hpp
/// @brief task_key: whose a task is (submit_options::key), for per-key fairness and limits.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace btq {

/// @brief A caller-chosen key (a client id, a tenant, a user): a string or an integer. Waiting
///        tasks of different keys take turns; the empty key (the default) is no key.
///        A string key and an integer key are never equal, even for "7" and 7.
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
    task_key(std::string_view text)
        : text_(text.empty() ? nullptr : std::make_shared<const std::string>(text)),
          kind_(text.empty() ? kind::none : kind::text) {}
    /// @brief An integer key.
    template <std::integral Integer>
        requires(!std::same_as<Integer, bool> && !std::same_as<Integer, char>)
    task_key(Integer number) : number_(static_cast<std::int64_t>(number)), kind_(kind::number) {}

    /// @brief True for no key.
    [[nodiscard]] bool empty() const noexcept { return kind_ == kind::none; }
    /// @brief True for an integer key.
    [[nodiscard]] bool is_number() const noexcept { return kind_ == kind::number; }
    /// @brief The text of a string key, the decimal digits of an integer key, "" for none.
    [[nodiscard]] std::string to_string() const {
        if (kind_ == kind::number) {
            return std::to_string(number_);
        }
        return text_ != nullptr ? *text_ : std::string();
    }

    /// @brief Same kind and same value.
    friend bool operator==(const task_key& a, const task_key& b) noexcept {
        return a.kind_ == b.kind_ && a.number_ == b.number_ && a.text() == b.text();
    }

    /// @brief A hash for unordered containers.
    [[nodiscard]] std::size_t hash() const noexcept {
        return kind_ == kind::number ? std::hash<std::int64_t>{}(number_)*31 + 1
                                     : std::hash<std::string_view>{}(text());
    }

  private:
    [[nodiscard]] std::string_view text() const noexcept {
        return text_ != nullptr ? std::string_view(*text_) : std::string_view();
    }

    enum class kind : std::uint8_t { none, text, number };
    // The text lives on the heap, shared by copies: a task_key holds no pointer into itself, so
    // GCC 12, which copies some coroutine temporaries byte by byte (a submit_options built in a
    // co_await expression), copies it safely; a std::string member would not survive that
    // (its short-string buffer).
    std::shared_ptr<const std::string> text_;
    std::int64_t number_ = 0;
    kind kind_ = kind::none;
};

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
