/// @file unique_job.hpp
/// @brief A move-only, call-once `void()` with small-buffer storage: the job type of the thread
///        executor. Jobs up to 48 bytes (a task plus its completion, typically) do not allocate.
#pragma once

#include <array>
#include <cstddef>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace btq::detail {

// The union below is raw storage for an object constructed in place; the member-init check
// cannot see that heap_ initializes it.
// NOLINTBEGIN(cppcoreguidelines-pro-type-member-init)
class unique_job {
  public:
    static constexpr std::size_t inline_size = 48;

    unique_job() noexcept = default;

    template <class F>
        requires(!std::is_same_v<std::decay_t<F>, unique_job> &&
                 std::is_invocable_v<std::decay_t<F>&>)
    explicit unique_job(F&& function) { // NOLINT(bugprone-forwarding-reference-overload)
        using stored = std::decay_t<F>;
        if constexpr (fits_inline<stored>) {
            ::new (static_cast<void*>(&storage_)) stored(std::forward<F>(function));
            ops_ = inline_ops<stored>();
        } else {
            heap_ = new stored(std::forward<F>(function));
            ops_ = heap_ops<stored>();
        }
    }

    unique_job(unique_job&& other) noexcept { take(other); }
    unique_job& operator=(unique_job&& other) noexcept {
        if (this != &other) {
            reset();
            take(other);
        }
        return *this;
    }
    unique_job(const unique_job&) = delete;
    unique_job& operator=(const unique_job&) = delete;
    ~unique_job() { reset(); }

    explicit operator bool() const noexcept { return ops_ != nullptr; }

    /// Runs the job and releases it.
    void operator()() {
        const operations* ops = std::exchange(ops_, nullptr);
        ops->run_and_destroy(this);
    }

  private:
    template <class T>
    static constexpr bool fits_inline =
        sizeof(T) <= inline_size && alignof(T) <= alignof(std::max_align_t) &&
        std::is_nothrow_move_constructible_v<T>;

    struct operations {
        void (*run_and_destroy)(unique_job* self);
        void (*move_to)(unique_job* from, unique_job* to) noexcept;
        void (*destroy)(unique_job* self) noexcept;
    };

    template <class T>
    struct destroy_in_place {
        void operator()(T* object) const noexcept { object->~T(); }
    };

    const operations* ops_ = nullptr;
    union {
        alignas(std::max_align_t) std::array<std::byte, inline_size> storage_;
        void* heap_ = nullptr;
    };

    template <class T>
    T* inline_object() noexcept {
        return std::launder(reinterpret_cast<T*>(&storage_)); // NOLINT
    }

    // The operation tables are built inside member functions, where the class is complete.
    template <class T>
    static const operations* inline_ops() noexcept {
        static constexpr operations table{
            [](unique_job* self) {
                const std::unique_ptr<T, destroy_in_place<T>> object(self->inline_object<T>());
                (*object)();
            },
            [](unique_job* from, unique_job* to) noexcept {
                T* object = from->inline_object<T>();
                ::new (static_cast<void*>(&to->storage_)) T(std::move(*object));
                object->~T();
            },
            [](unique_job* self) noexcept { self->inline_object<T>()->~T(); },
        };
        return &table;
    }

    template <class T>
    static const operations* heap_ops() noexcept {
        static constexpr operations table{
            [](unique_job* self) {
                std::unique_ptr<T> object(static_cast<T*>(self->heap_));
                (*object)();
            },
            [](unique_job* from, unique_job* to) noexcept { to->heap_ = from->heap_; },
            [](unique_job* self) noexcept { delete static_cast<T*>(self->heap_); },
        };
        return &table;
    }

    void take(unique_job& other) noexcept {
        if (other.ops_ != nullptr) {
            other.ops_->move_to(&other, this);
            ops_ = std::exchange(other.ops_, nullptr);
        }
    }
    void reset() noexcept {
        if (ops_ != nullptr) {
            std::exchange(ops_, nullptr)->destroy(this);
        }
    }
};
// NOLINTEND(cppcoreguidelines-pro-type-member-init)

} // namespace btq::detail
